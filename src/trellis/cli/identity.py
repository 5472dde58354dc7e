"""`trellis identity show WORKLOAD`: a workload's SPIFFE ID and its proxies' certificates."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from trellis.cli import output
from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import Server

app = typer.Typer(help="Workload identities (SPIFFE IDs and certificates).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Workload identities (SPIFFE IDs and certificates)."""


def expires_in(not_after: str, now: dt.datetime) -> str:
    """`in 23h59m`, `in 45s`, or `expired 3m ago`."""
    left = (dt.datetime.fromisoformat(not_after) - now).total_seconds()
    text = _span(abs(left))
    return f"in {text}" if left >= 0 else f"expired {text} ago"


def _span(seconds: float) -> str:
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@app.command("show")
def show(
    workload: Annotated[str, typer.Argument(help="the workload's name")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON answer")] = False,
    server: Server = None,
) -> None:
    """Show a workload's SPIFFE ID and the current certificates of its service account."""
    with reporting():
        try:
            body = connect(server).request(
                "GET", f"/api/v1/identities/{workload}", params={"namespace": namespace}
            )
        except ApiError as e:
            if e.status == 404:
                raise CliError(f"workload/{workload} not found in namespace {namespace}") from None
            raise
        if json_out:
            typer.echo(output.to_json(body))
            return
        _print(body)


def _print(body: dict[str, Any]) -> None:
    out = output.console()
    out.print(f"Workload:        {body['namespace']}/{body['workload']}", markup=False)
    out.print(f"Service account: {body['serviceAccount']}", markup=False)
    out.print(f"SPIFFE ID:       {body['spiffeId']}", markup=False)
    certs = body["certificates"]
    if not certs:
        out.print("Certificates:    <none> (no proxy of this identity holds one)")
        return
    now = dt.datetime.now(dt.UTC)
    suffix = f"~{body['workload']}.{body['namespace']}"
    mine = [c for c in certs if (c.get("node") or "").endswith(suffix)]
    shown = mine or certs
    out.print(
        "Certificates:"
        if mine
        else "Certificates (of the service account; none bound to this workload's node yet):"
    )
    table = output.plain_table(["SERIAL", "EXPIRES", "NOT AFTER", "NODE", "TOKEN"])
    for c in shown:
        table.add_row(
            c["serial"],
            expires_in(c["notAfter"], now),
            c["notAfter"],
            c.get("node") or "-",
            c["tokenId"],
        )
    out.print(table)
