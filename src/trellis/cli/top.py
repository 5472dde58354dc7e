"""`trellis top [SERVICE]`: a live table of the busiest traffic, refreshed every second.

With SERVICE: built on tap, like Linkerd's top: the requests to SERVICE grouped by
source, destination, method and path (rps, success, p50/p99 over the last 10 s).
Without: the busiest edges of the mesh from the golden signals (/api/v1/signals over
the last 10 s; the proxies report every 2 s).
On a terminal the table redraws in place (rich Live); piped, a table (or with -o json
one JSON object) per second.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from trellis.cli import output
from trellis.cli.client import ApiError, Client, CliError, connect, reporting
from trellis.cli.live import TopTable, require_token, tap_stream
from trellis.cli.options import OutputFormat, Server

REFRESH_SECONDS = 1.0
SIGNALS_WINDOW = 10


def top(
    service: Annotated[
        str | None, typer.Argument(help="NAME or NAME.NAMESPACE; none: the mesh's edges")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", help="show the busiest N")] = 20,
    duration: Annotated[
        float | None, typer.Option("--duration", help="stop after this many seconds")
    ] = None,
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, or json (one object a second)")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Show the busiest paths to SERVICE (or the mesh's busiest edges), live."""
    with reporting():
        client = connect(server)
        require_token(client, "trellis top")
        if service is None:
            _check(client)
            frames = _edge_frames(client)
        else:
            frames = _path_frames(client, service, duration)
        deadline = time.monotonic() + duration if duration else None
        console = output.console()
        if out is OutputFormat.table and console.is_terminal:
            with Live(console=console, auto_refresh=False) as live:
                for title, items in _until(frames, deadline):
                    live.update(_table(title, items[:rows], service), refresh=True)
            return
        for title, items in _until(frames, deadline):
            if out is OutputFormat.json:
                typer.echo(json.dumps({"title": title, "rows": items[:rows]}))
            else:
                console.print(_table(title, items[:rows], service))
                console.file.flush()


Frame = tuple[str, list[dict[str, Any]]]


def _until(frames: Any, deadline: float | None) -> Any:
    for frame in frames:
        yield frame
        if deadline is not None and time.monotonic() >= deadline:
            return


def _check(client: Client) -> None:
    """Fail early (token, reachability) before the first frame."""
    client.request("GET", "/api/v1/signals", params={"window": SIGNALS_WINDOW})


def _edge_frames(client: Client) -> Any:
    while True:
        body = client.request("GET", "/api/v1/signals", params={"window": SIGNALS_WINDOW})
        edges = sorted(body["edges"], key=lambda e: (-e["rps"], e["source"], e["destination"]))
        title = f"busiest edges, last {SIGNALS_WINDOW} s ({body['proxies_reporting']} proxies)"
        yield title, [{**e, "count": e["requests"]} for e in edges]
        time.sleep(REFRESH_SECONDS)


def _path_frames(client: Client, service: str, duration: float | None) -> Any:
    table = TopTable()
    failure: list[BaseException] = []
    started = threading.Event()
    lock = threading.Lock()

    def read() -> None:
        try:
            for item in tap_stream(client, service, duration=duration):
                if item.get("type") == "start":
                    started.set()
                with lock:
                    table.add(item)
        except BaseException as e:  # shown by the main thread
            failure.append(e)
        finally:
            started.set()

    reader = threading.Thread(target=read, daemon=True, name="tap-reader")
    reader.start()
    started.wait(15)
    while True:
        if failure:
            error = failure[0]
            if isinstance(
                error, ApiError
            ):  # a new one: raised before, it is frozen with its traceback
                raise CliError(error.message)
            if isinstance(error, CliError):
                raise error
            raise CliError(f"the tap failed: {error!r}")
        with lock:
            items = table.snapshot()
        yield f"requests to {service}, last {table.window:g} s", items
        if not reader.is_alive():
            return
        time.sleep(REFRESH_SECONDS)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}ms"


def _table(title: str, items: list[dict[str, Any]], service: str | None) -> Table:
    headers = ["SOURCE", "DESTINATION"]
    if service is not None:
        headers += ["METHOD", "PATH"]
    headers += ["RPS", "SUCCESS", "P50", "P99", "COUNT"]
    table = output.plain_table(headers)
    table.title = f"{title} · {time.strftime('%H:%M:%S')}"
    for item in items:
        cells = [item["source"], item["destination"]]
        if service is not None:
            cells += [item["method"], item["path"]]
        success = item.get("success_rate")
        cells += [
            f"{item['rps']:.1f}",
            "-" if success is None else f"{100 * success:.1f}%",
            _ms(item.get("p50_ms")),
            _ms(item.get("p99_ms")),
            str(item.get("count", "")),
        ]
        table.add_row(*cells)
    return table
