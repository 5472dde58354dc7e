"""`trellis proxy`: run a sidecar proxy in the foreground (what `trellis run` embeds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from trellis.proxy.options import Address, ProxyOptions


def _address(value: str, option: str) -> Address:
    try:
        return Address.parse(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


def parse_labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


def proxy(
    control: Annotated[
        list[str], typer.Option("--control", help="control-plane xDS address HOST:PORT (repeat)")
    ],
    workload: Annotated[str, typer.Option("--workload", help="this workload's name")],
    namespace: Annotated[str, typer.Option("--namespace")] = "default",
    service_account: Annotated[str, typer.Option("--service-account")] = "",
    label: Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE (repeat)")] = None,
    app_port: Annotated[
        list[int] | None, typer.Option("--app-port", help="a port the app listens on (repeat)")
    ] = None,
    outbound: Annotated[str, typer.Option("--outbound")] = "127.0.0.1:15001",
    inbound: Annotated[str, typer.Option("--inbound")] = "127.0.0.1:15006",
    admin: Annotated[str, typer.Option("--admin")] = "127.0.0.1:15000",
    access_log: Annotated[
        str, typer.Option("--access-log", help="JSON access log: '-' for stdout, or a file")
    ] = "",
    join_token: Annotated[
        str,
        typer.Option(
            "--join-token",
            envvar="TRELLIS_JOIN_TOKEN",
            help="mesh identity: a join token (`trellis token create`); --control is then"
            " the control plane's secure port",
        ),
    ] = "",
    ca_file: Annotated[
        str, typer.Option("--ca-file", help="the mesh CA bundle to trust (with --join-token)")
    ] = "",
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    """Run a sidecar proxy: outbound, inbound and admin listeners configured over xDS."""
    bundle = b""
    if join_token:
        if not ca_file:
            raise typer.BadParameter("--join-token needs --ca-file", param_hint="--ca-file")
        try:
            bundle = Path(ca_file).read_bytes()
        except OSError as e:
            raise typer.BadParameter(str(e), param_hint="--ca-file") from None
    options = ProxyOptions(
        control=tuple(control),
        workload=workload,
        namespace=namespace,
        service_account=service_account,
        labels=parse_labels(label or []),
        app_ports=tuple(app_port or ()),
        outbound=_address(outbound, "--outbound"),
        inbound=_address(inbound, "--inbound"),
        admin=_address(admin, "--admin"),
        access_log=access_log,
        join_token=join_token,
        ca_bundle=bundle,
    )
    from trellis.proxy.main import run

    try:
        run(options, log_level=log_level)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
