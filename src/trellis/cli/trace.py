"""`trellis trace ID`: one trace as a waterfall (its spans as a tree, offsets, durations, a bar
on the trace's timeline, the slowest span marked), or its JSON."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from trellis.cli import output, trace_text
from trellis.cli.client import connect, reporting
from trellis.cli.options import OutputFormat, Server


def trace(
    trace_id: Annotated[
        str, typer.Argument(help="the trace id: 32 hex digits (16 for B3's 64-bit)")
    ],
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table (the waterfall), json or yaml")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Show one trace as a waterfall; the slowest span (largest time of its own) is marked."""
    with reporting():
        body = connect(server).request("GET", f"/api/v1/traces/{trace_id.strip().lower()}")
        if out is OutputFormat.json:
            typer.echo(output.to_json(body))
            return
        if out is OutputFormat.yaml:
            typer.echo(output.to_yaml([body]), nl=False)
            return
        console = output.console()
        console.print(trace_text.trace_heading(body), markup=False)
        table = output.plain_table(trace_text.WATERFALL_HEADERS)
        for row in trace_text.waterfall_rows(body):
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        slowest = trace_text.slowest_line(body)
        if slowest is not None:
            console.print(slowest, markup=False)
