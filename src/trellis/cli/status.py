"""`trellis status`: every connected node, per xDS type its version and ACK state, and when its
mesh certificate expires (nodes bound to one on the secure port)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from trellis.cli import output
from trellis.cli.client import connect, reporting
from trellis.cli.identity import expires_in
from trellis.cli.options import OutputFormat, Server

TYPES = ("LDS", "RDS", "CDS", "EDS")


def type_cell(t: dict[str, Any] | None) -> str:
    """`v3 ACKED`, `v4 NACKED`, `v2 PENDING` (sent, not answered yet) or `-` (not subscribed)."""
    if t is None:
        return "-"
    if t.get("nacked"):
        return f"{t.get('sentVersion') or '-'} NACKED"
    if t.get("acked"):
        return f"{t.get('ackedVersion')} ACKED"
    if t.get("sentVersion"):
        return f"{t['sentVersion']} PENDING"
    return "WAITING"


def status(
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table or json")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Show every node connected over xDS: kind, and per type version and ACKED/NACKED."""
    with reporting():
        body = connect(server).request("GET", "/api/v1/status")
        if out is not OutputFormat.table:
            typer.echo(output.to_json(body) if out is OutputFormat.json else output.to_yaml([body]))
            return
        nodes = body["nodes"]
        if not nodes:
            typer.echo(f"No nodes connected (store revision {body['revision']}).")
            return
        table = output.plain_table(["NODE", "KIND", "PEER", *TYPES, "CERT EXPIRES"])
        now = datetime.datetime.now(datetime.UTC)
        errors: list[str] = []
        for n in nodes:
            types = n.get("types", {})
            cert = n.get("certificate")
            table.add_row(
                n["id"],
                n["kind"],
                n.get("peer", ""),
                *(type_cell(types.get(t)) for t in TYPES),
                expires_in(cert["notAfter"], now).replace(" ", "-") if cert else "-",
            )
            for name, t in types.items():
                if t.get("nacked"):
                    errors.append(f"{n['id']} {name} NACKED: {t.get('error') or 'no message'}")
                if t.get("notFound"):
                    errors.append(f"{n['id']} {name} not found: {', '.join(t['notFound'])}")
        console = output.console()
        console.print(table)
        for line in errors:
            console.print(line, markup=False)
