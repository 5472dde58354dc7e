"""`trellis run --service NAME [--port P] ... -- CMD...`: run an app in the mesh."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from trellis.cli.client import DEFAULT_SERVER, stderr
from trellis.cli.config_file import read_config
from trellis.cli.options import Server
from trellis.cli.proxy import parse_labels


def run(
    command: Annotated[list[str], typer.Argument(help="the app: -- CMD [ARGS...]")],
    service: Annotated[str, typer.Option("--service", help="the service this app is part of")],
    port: Annotated[
        int | None, typer.Option("--port", help="the port the app listens on (none for a job)")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE (repeat)")] = None,
    namespace: Annotated[str, typer.Option("--namespace")] = "default",
    workload: Annotated[
        str, typer.Option("--workload", help="workload name (default: SERVICE-random)")
    ] = "",
    service_account: Annotated[str, typer.Option("--service-account")] = "",
    protocol: Annotated[str, typer.Option("--protocol", help="http | http2 | grpc | tcp")] = "http",
    server: Server = None,
    control: Annotated[
        list[str] | None,
        typer.Option("--control", help="xDS address HOST:PORT (default: asked of the API)"),
    ] = None,
    address: Annotated[
        str, typer.Option("--address", help="the IP peers reach this workload on")
    ] = "127.0.0.1",
    proxyless: Annotated[
        bool, typer.Option("--proxyless", help="no sidecar: the app is a grpcio xDS app")
    ] = False,
    health_path: Annotated[
        str | None, typer.Option("--health-path", help="HTTP path that says the app is healthy")
    ] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="registration lease, seconds")] = 10.0,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout")] = 10.0,
    access_log: Annotated[
        str, typer.Option("--access-log", help="sidecar JSON access log: '-' or a file")
    ] = "",
    outbound_port: Annotated[
        int, typer.Option("--outbound-port", help="0: a free port; taken: a free one")
    ] = 15001,
    inbound_port: Annotated[int, typer.Option("--inbound-port")] = 15006,
    admin_port: Annotated[int, typer.Option("--admin-port")] = 15000,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="no mesh identity: plaintext xDS, no mTLS (development)"),
    ] = False,
    join_token: Annotated[
        str,
        typer.Option(
            "--join-token",
            envvar="TRELLIS_JOIN_TOKEN",
            help="join token for the identity (default: made with the admin token)",
        ),
    ] = "",
    ca_file: Annotated[
        str, typer.Option("--ca-file", help="CA bundle to pin (default: from the API)")
    ] = "",
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    """Run CMD beside a sidecar: it joins the mesh and calls other services by name."""
    # gRPC's fork handlers only log noise when the app is spawned; the app gets the
    # caller's setting back (run/env.py starts from the environment as it was).
    app_base = dict(os.environ)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from trellis.run.runner import RunError, RunOptions
    from trellis.run.runner import run as run_app

    if not command:
        raise typer.BadParameter("give the app to run after --", param_hint="CMD")
    saved = read_config()
    api = server or os.environ.get("TRELLIS_SERVER") or saved.server or DEFAULT_SERVER
    token = os.environ.get("TRELLIS_TOKEN") or saved.token
    if not token:
        stderr.print("error: no admin token: set TRELLIS_TOKEN or run `trellis control` once")
        raise typer.Exit(1)
    options = RunOptions(
        service=service,
        command=command,
        api=api,
        token=token,
        namespace=namespace,
        port=port,
        protocol=protocol,
        labels=parse_labels(label or []),
        workload=workload,
        service_account=service_account,
        control=tuple(control or ()),
        address=address,
        proxyless=proxyless,
        health_path=health_path,
        ttl=ttl,
        drain_timeout=drain_timeout,
        access_log=access_log,
        environment=app_base,
        insecure=insecure,
        join_token=join_token,
        ca_file=ca_file,
        outbound_port=outbound_port,
        inbound_port=inbound_port,
        admin_port=admin_port,
    )
    try:
        code = run_app(options, log_level=log_level)
    except RunError as e:
        stderr.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
