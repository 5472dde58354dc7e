"""`trellis traces`: search the control plane's recent traces (a table, or JSON)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from trellis.cli import output, trace_text
from trellis.cli.client import connect, reporting
from trellis.cli.options import OutputFormat, Server


def traces(
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="a service the trace passed through")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="a span with this status: 5xx, 4xx, 2xx, ... or error"),
    ] = None,
    min_duration: Annotated[
        str | None,
        typer.Option("--min-duration", help="at least this long (root span): 100ms, 1.5s, 250us"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="started within this long (15m) or since an RFC 3339 time"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first")] = 20,
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, json or yaml")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """List recent traces from the control plane's trace store, newest first."""
    with reporting():
        params = {
            "service": service,
            "status": status,
            "minDuration": min_duration,
            "since": since,
            "limit": limit,
        }
        body = connect(server).request("GET", "/api/v1/traces", params=params)
        if out is OutputFormat.json:
            typer.echo(output.to_json(body))
            return
        if out is OutputFormat.yaml:
            typer.echo(output.to_yaml([body]), nl=False)
            return
        items = body["items"]
        if not items:
            typer.echo("No traces found.", err=True)
            return
        table = output.plain_table(trace_text.SUMMARY_HEADERS)
        for item in items:
            table.add_row(*(Text(cell) for cell in trace_text.summary_row(item)))
        output.console().print(table)
        if body["matched"] > len(items):
            typer.echo(f"{len(items)} of {body['matched']} matching traces (--limit)", err=True)
