"""`trellis tap SERVICE`: requests to SERVICE as the proxies see them, live (lines or JSON)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from trellis.cli.client import connect, reporting
from trellis.cli.live import TAP_HEADERS, require_token, tap_row, tap_stream
from trellis.cli.options import OutputFormat, Server


def tap(
    service: Annotated[str, typer.Argument(help="the service: NAME or NAME.NAMESPACE")],
    path: Annotated[str | None, typer.Option("--path", help="path prefix, e.g. /api")] = None,
    method: Annotated[str | None, typer.Option("--method", help="GET, POST, ...")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="status class: 2xx, 3xx, 4xx or 5xx")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="stop after this many requests")] = 0,
    duration: Annotated[
        float | None, typer.Option("--duration", help="stop after this many seconds")
    ] = None,
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table (lines) or json (one a line)")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Stream the requests to SERVICE as they happen, from its proxies (inbound) and its
    callers' proxies (outbound). Header values are redacted except a short allow-list."""
    with reporting():
        client = connect(server)
        require_token(client, "trellis tap")
        widths = (12, 3, 20, 20, 6, 20, 24, 6, 9, 5, 14, 32)
        for item in tap_stream(
            client, service, path=path, method=method, status=status, limit=limit,
            duration=duration,
        ):  # fmt: skip
            kind = item.get("type")
            if kind == "start":
                typer.echo(
                    f"tapping {item.get('service')} on {item.get('proxies')} proxies "
                    "(Ctrl-C stops)",
                    err=True,
                )
                if out is not OutputFormat.json:
                    typer.echo(_line(TAP_HEADERS, widths))
            elif kind == "event":
                if out is OutputFormat.json:
                    typer.echo(json.dumps(item, separators=(",", ":")))
                else:
                    typer.echo(_line(tap_row(item), widths))
                sys.stdout.flush()
            elif kind == "end":
                dropped = int(item.get("droppedByProxies", 0)) + int(item.get("droppedHere", 0))
                typer.echo(
                    f"tap ended ({item.get('reason')}): {item.get('delivered')} requests shown, "
                    f"{dropped} over the rate bound",
                    err=True,
                )


def _line(cells: tuple[str, ...] | list[str], widths: tuple[int, ...]) -> str:
    return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
