"""`trellis proxy`: run a sidecar proxy in the foreground (what `trellis run` embeds).

Parsed with argparse, not typer: this process is a sidecar for its whole life,
and typer's run-time coercion imports pydantic (about 9 MB of RSS per sidecar,
measured; issue 3 caps a sidecar at 60 MB). `trellis --help` still lists the
command (cli/main.py forwards to `main`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from trellis.proxy.listeners.timeouts import DEFAULT_TIMEOUTS, DownstreamTimeouts
from trellis.proxy.options import Address, ProxyOptions

HELP = "Run a sidecar proxy: outbound, inbound and admin listeners configured over xDS."


class UsageParser(argparse.ArgumentParser):
    """argparse with `error: ...` after the usage, exit 2 (the sidecar commands share it)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="trellis proxy", description=HELP)
    add = p.add_argument
    add("--control", action="append", required=True, metavar="HOST:PORT",
        help="control-plane xDS address (repeat)")  # fmt: skip
    add("--workload", required=True, help="this workload's name")
    add("--namespace", default="default")
    add("--service-account", default="")
    add("--label", action="append", default=[], metavar="KEY=VALUE", help="(repeat)")
    add("--app-port", action="append", type=int, default=[], metavar="PORT",
        help="a port the app listens on (repeat)")  # fmt: skip
    add("--outbound", default="127.0.0.1:15001", metavar="HOST:PORT")
    add("--inbound", default="127.0.0.1:15006", metavar="HOST:PORT")
    add("--admin", default="127.0.0.1:15000", metavar="HOST:PORT")
    add("--access-log", default="", help="JSON access log: '-' for stdout, or a file")
    add_metrics_options(p)
    add("--metrics", default="", metavar="HOST:PORT",
        help="metrics listener for a Prometheus elsewhere (Istio's 15090: e.g."
        " 10.0.0.5:15090); needs --metrics-token-sha256. Off by default")  # fmt: skip
    add("--join-token", default=os.environ.get("TRELLIS_JOIN_TOKEN", ""),
        help="mesh identity: a join token (`trellis token create`; env TRELLIS_JOIN_TOKEN);"
        " --control is then the control plane's secure port")  # fmt: skip
    add("--ca-file", default="", help="the mesh CA bundle to trust (with --join-token)")
    add_timeout_options(p)
    add("--log-level", default="warning")
    return p


def add_metrics_options(p: argparse.ArgumentParser) -> None:
    """The metrics options `trellis proxy` and `trellis run` share."""
    add = p.add_argument
    add("--metrics-token-sha256", default=os.environ.get("TRELLIS_METRICS_TOKEN_SHA256", ""),
        metavar="HEX", help="SHA-256 of the scrape token the metrics listener requires"
        " (`trellis metrics token`; env TRELLIS_METRICS_TOKEN_SHA256)")  # fmt: skip
    add("--metrics-max-series", type=int, default=300, metavar="N",
        help="label sets of metrics kept; later ones count as overflow (default 300)")  # fmt: skip


def metrics_from(args: argparse.Namespace, listen: str) -> tuple[Address | None, str, int]:
    """(metrics address or None, token digest, series cap); ValueError names the option."""
    from trellis.proxy.listeners.scrape import check_digest

    if args.metrics_max_series < 1:
        raise ValueError(f"--metrics-max-series: must be at least 1, not {args.metrics_max_series}")
    if not listen:
        return None, "", args.metrics_max_series
    if not args.metrics_token_sha256:
        raise ValueError("--metrics-token-sha256: the metrics listener needs the scrape token's"
                         " SHA-256 (it serves nothing without the token)")  # fmt: skip
    try:
        digest = check_digest(args.metrics_token_sha256)
    except ValueError as e:
        raise ValueError(f"--metrics-token-sha256: {e}") from None
    try:
        address = Address.parse(listen)
    except ValueError as e:
        raise ValueError(f"--metrics: {e}") from None
    return address, digest, args.metrics_max_series


def add_timeout_options(p: argparse.ArgumentParser) -> None:
    """How long a client of the sidecar may take (seconds; listeners/timeouts.py)."""
    d = DEFAULT_TIMEOUTS
    add = p.add_argument
    add(
        "--head-timeout",
        type=float,
        default=d.head,
        metavar="SECONDS",
        help=f"a request head must be complete within this (408; default {d.head:g})",
    )
    add(
        "--body-idle-timeout",
        type=float,
        default=d.body_idle,
        metavar="SECONDS",
        help=f"a request body may pause this long at most (408; default {d.body_idle:g})",
    )
    add(
        "--body-timeout",
        type=float,
        default=d.body,
        metavar="SECONDS",
        help=f"a request body must be complete within this (408; default {d.body:g})",
    )
    add("--idle-timeout", type=float, default=d.idle, metavar="SECONDS",
        help=f"a client connection idle this long closes (default {d.idle:g})")  # fmt: skip


def timeouts_from(args: argparse.Namespace) -> DownstreamTimeouts:
    """The timeouts given; ValueError names the option at fault."""
    for option in ("head_timeout", "body_idle_timeout", "body_timeout", "idle_timeout"):
        value = getattr(args, option)
        if not value > 0:
            raise ValueError(f"--{option.replace('_', '-')}: must be positive, not {value}")
    return DownstreamTimeouts(
        head=args.head_timeout,
        body_idle=args.body_idle_timeout,
        body=args.body_timeout,
        idle=args.idle_timeout,
    )


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label: {item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def options_from(args: argparse.Namespace) -> ProxyOptions:
    """ProxyOptions from parsed arguments; ValueError names the option at fault."""
    bundle = b""
    if args.join_token:
        if not args.ca_file:
            raise ValueError("--ca-file: --join-token needs --ca-file")
        try:
            bundle = Path(args.ca_file).read_bytes()
        except OSError as e:
            raise ValueError(f"--ca-file: {e}") from None

    def address(value: str, option: str) -> Address:
        try:
            return Address.parse(value)
        except ValueError as e:
            raise ValueError(f"{option}: {e}") from None

    metrics, digest, max_series = metrics_from(args, args.metrics)
    return ProxyOptions(
        control=tuple(args.control),
        workload=args.workload,
        namespace=args.namespace,
        service_account=args.service_account,
        labels=parse_labels(args.label),
        app_ports=tuple(args.app_port),
        outbound=address(args.outbound, "--outbound"),
        inbound=address(args.inbound, "--inbound"),
        admin=address(args.admin, "--admin"),
        access_log=args.access_log,
        join_token=args.join_token,
        ca_bundle=bundle,
        timeouts=timeouts_from(args),
        metrics=metrics,
        metrics_token_sha256=digest,
        metrics_max_series=max_series,
    )


def main(argv: Sequence[str]) -> None:
    p = parser()
    args = p.parse_args(list(argv))
    try:
        options = options_from(args)
    except ValueError as e:
        p.error(str(e))
    from trellis.proxy.main import run

    try:
        run(options, log_level=args.log_level)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass
