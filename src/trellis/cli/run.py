"""`trellis run --service NAME [--port P] ... -- CMD...`: run an app in the mesh.

Parsed with argparse, not typer, like `trellis proxy`: this process is the app's
sidecar for its whole life, and typer (through its run-time coercion) and the
resource model would load pydantic into it (~9 MB of RSS, measured).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from trellis.cli.config_file import DEFAULT_SERVER, read_config
from trellis.cli.proxy import (
    UsageParser,
    add_metrics_options,
    add_timeout_options,
    metrics_from,
    parse_labels,
    timeouts_from,
)

HELP = "Run CMD beside a sidecar: it joins the mesh and calls other services by name."


def parser() -> argparse.ArgumentParser:
    p = UsageParser(
        prog="trellis run",
        usage="trellis run --service NAME [OPTIONS] -- CMD [ARGS...]",
        description=HELP,
    )
    add = p.add_argument
    add("command", nargs=argparse.REMAINDER, help="the app: -- CMD [ARGS...]")
    add("--service", required=True, help="the service this app is part of")
    add("--port", type=int, default=None, help="the port the app listens on (none for a job)")
    add("--label", action="append", default=[], metavar="KEY=VALUE", help="(repeat)")
    add("--namespace", default="default")
    add("--workload", default="", help="workload name (default: SERVICE-random)")
    add("--service-account", default="")
    add("--protocol", default="http", choices=["http", "http2", "grpc", "tcp"])
    add("--server", default=None,
        help="control plane URL (default: $TRELLIS_SERVER, config file, :7070)")  # fmt: skip
    add("--control", action="append", default=[], metavar="HOST:PORT",
        help="xDS address (default: asked of the API)")  # fmt: skip
    add("--address", default="127.0.0.1", help="the IP peers reach this workload on")
    add("--proxyless", action="store_true", help="no sidecar: the app is a grpcio xDS app")
    add("--region", default="", help="locality: the region this workload runs in")
    add("--zone", default="", help="locality: its zone (callers prefer their own zone)")
    add("--sub-zone", default="", help="locality: its sub-zone")
    add(
        "--health-path",
        default=None,
        help="HTTP path that says the app is healthy (2xx/3xx), checked every 2 s; "
        "3 failures in a row take it out of the endpoints, 1 success brings it back",
    )
    add("--ttl", type=float, default=10.0, help="registration lease, seconds")
    add(
        "--drain-delay",
        type=float,
        default=3.0,
        help="after deregistering, keep serving while callers still send, up to this "
        "long (seconds; ends once no request came for 0.5 s)",
    )
    add("--drain-timeout", type=float, default=10.0)
    add("--access-log", default="", help="sidecar JSON access log: '-' or a file")
    add("--outbound-port", type=int, default=15001, help="0: a free port; taken: a free one")
    add("--inbound-port", type=int, default=15006)
    add("--admin-port", type=int, default=15000)
    add("--metrics-port", type=int, default=15090,
        help="the sidecar's metrics listener on --address, for Prometheus (scrape token"
        " required; taken: a free one), listed by the control plane's HTTP SD")  # fmt: skip
    add("--no-metrics", action="store_true", help="no metrics listener (the admin port keeps"
        " /metrics on loopback)")  # fmt: skip
    add_metrics_options(p)
    add("--insecure", action="store_true",
        help="no mesh identity: plaintext xDS, no mTLS (development)")  # fmt: skip
    add("--join-token", default=os.environ.get("TRELLIS_JOIN_TOKEN", ""),
        help="join token for the identity (default: made with the admin token;"
        " env TRELLIS_JOIN_TOKEN)")  # fmt: skip
    add("--ca-file", default="", help="CA bundle to pin (default: from the API)")
    add_timeout_options(p)
    add("--log-level", default="warning")
    return p


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str], dict[str, str]]:
    """(options, the app's argv, labels); a usage error exits 2 naming the option."""
    p = parser()
    args = p.parse_args(list(argv))
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        p.error("give the app to run after --")
    try:
        labels = parse_labels(args.label)
        args.timeouts = timeouts_from(args)
        if args.metrics_token_sha256:
            metrics_from(args, "127.0.0.1:0")  # checks the digest and the cap
        elif args.metrics_max_series < 1:
            metrics_from(args, "")
    except ValueError as e:
        p.error(str(e))
    return args, command, labels


def main(argv: Sequence[str]) -> None:
    args, command, labels = parse(argv)
    # gRPC's fork handlers only log noise when the app is spawned; the app gets the
    # caller's setting back (run/env.py starts from the environment as it was).
    app_base = dict(os.environ)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from trellis.run.runner import RunError, RunOptions
    from trellis.run.runner import run as run_app

    saved = read_config()
    api = args.server or os.environ.get("TRELLIS_SERVER") or saved.server or DEFAULT_SERVER
    token = os.environ.get("TRELLIS_TOKEN") or saved.token
    if not token:
        print(
            "error: no admin token: set TRELLIS_TOKEN or run `trellis control` once",
            file=sys.stderr,
        )
        raise SystemExit(1)
    options = RunOptions(
        service=args.service,
        command=command,
        api=api,
        token=token,
        namespace=args.namespace,
        port=args.port,
        protocol=args.protocol,
        labels=labels,
        workload=args.workload,
        service_account=args.service_account,
        control=tuple(args.control),
        address=args.address,
        proxyless=args.proxyless,
        health_path=args.health_path,
        ttl=args.ttl,
        drain_timeout=args.drain_timeout,
        drain_delay=args.drain_delay,
        access_log=args.access_log,
        environment=app_base,
        insecure=args.insecure,
        join_token=args.join_token,
        ca_file=args.ca_file,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        admin_port=args.admin_port,
        timeouts=args.timeouts,
        metrics_port=None if args.no_metrics else args.metrics_port,
        metrics_token_sha256=args.metrics_token_sha256.strip().lower(),
        metrics_max_series=args.metrics_max_series,
        region=args.region,
        zone=args.zone,
        sub_zone=args.sub_zone,
    )
    try:
        code = run_app(options, log_level=args.log_level)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)
