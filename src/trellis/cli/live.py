"""What `trellis tap` and `trellis top` share: the tap stream from the API, and its rows.

`tap_stream` opens `GET /api/v1/tap` (NDJSON) and yields its objects as they arrive;
the admin token is required (checked here first, so the refusal is clear without a
round trip). `EdgeStats` is top's arithmetic over tap events (pure).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from trellis.cli.client import ApiError, Client, CliError

TOKEN_NEEDED = (
    "{what} needs the admin token (traffic data is not public): set $TRELLIS_TOKEN, or use "
    "the CLI config `trellis control` wrote on first start"
)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def require_token(client: Client, what: str) -> None:
    if not client.token:
        raise CliError(TOKEN_NEEDED.format(what=what))


def tap_stream(
    client: Client,
    service: str,
    *,
    path: str | None = None,
    method: str | None = None,
    status: str | None = None,
    limit: int = 0,
    duration: float | None = None,
) -> Iterator[dict[str, Any]]:
    """The tap's lines, as dicts, until the server ends the stream (or the caller stops)."""
    params: dict[str, Any] = {"service": service, "path": path, "method": method}
    params["status"] = status
    if limit:
        params["limit"] = limit
    if duration is not None:
        params["duration"] = duration
    clean = {k: v for k, v in params.items() if v is not None}
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    timeout = httpx.Timeout(10.0, read=None)
    refused: tuple[int, Any] | None = None
    try:
        with httpx.stream(
            "GET", client.server + "/api/v1/tap", params=clean, headers=headers, timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                try:
                    refused = (response.status_code, response.json())
                except ValueError:
                    refused = (response.status_code, response.text)
            else:
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
    except httpx.TransportError as e:
        raise CliError(
            f"cannot reach the control plane at {client.server} ({type(e).__name__}: {e}); "
            "is `trellis control` running? (set --server or TRELLIS_SERVER)"
        ) from None
    if refused is not None:
        # Raised out here: ApiError is a frozen dataclass, and a context manager that
        # re-raises sets its __traceback__ (a TypeError with slots=True).
        raise ApiError(*refused)


TAP_HEADERS = ("TIME", "DIR", "SOURCE", "DESTINATION", "METHOD", "AUTHORITY", "PATH", "STATUS",
               "LATENCY", "FLAGS", "ROUTE", "TRACE")  # fmt: skip


def tap_row(event: dict[str, Any]) -> list[str]:
    return [
        str(event.get("time", ""))[11:23],
        "in" if event.get("direction") == "inbound" else "out",
        str(event.get("source", "")),
        str(event.get("destination", "")),
        str(event.get("method", "")),
        str(event.get("authority", "")),
        str(event.get("path", "")),
        str(event.get("status", "")),
        f"{float(event.get('latency_ms') or 0):.1f}ms",
        str(event.get("flags") or "-"),
        str(event.get("route") or "-"),
        str(event.get("trace_id") or event.get("request_id") or "-"),
    ]


# -- top --------------------------------------------------------------------------------------

WINDOW_SECONDS = 10.0
MAX_SAMPLES = 10_000  # per row: what the window keeps at most
MAX_ROWS = 1000


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    samples: deque[tuple[float, int, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_SAMPLES)
    )
    total: int = 0


class TopTable:
    """Tap events grouped by (source, destination, method, path), over the last WINDOW_SECONDS.

    One request seen at both ends counts once: a caller's outbound event when the caller
    is in the mesh, else the destination's inbound one (what /api/v1/signals does too).
    """

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.rows: dict[tuple[str, str, str, str], Row] = {}
        self.started = time.monotonic()
        self.overflow = 0

    def add(self, event: dict[str, Any], now: float | None = None) -> None:
        if event.get("type") != "event":
            return
        if event.get("direction") == "inbound" and event.get("source") != "unknown":
            return  # the caller's proxy reported it too (outbound)
        path = str(event.get("path", "")).split("?")[0]
        key = (str(event["source"]), str(event["destination"]), str(event["method"]), path)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= MAX_ROWS:
                self.overflow += 1
                return
            row = self.rows[key] = Row()
        t = time.monotonic() if now is None else now
        row.samples.append((t, int(event.get("status", 0)), float(event.get("latency_ms", 0))))
        row.total += 1

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """The rows, busiest first: rps, success, p50/p99 over the window, count since start."""
        t = time.monotonic() if now is None else now
        span = max(1.0, min(self.window, t - self.started))
        out: list[dict[str, Any]] = []
        for (source, destination, method, path), row in self.rows.items():
            while row.samples and row.samples[0][0] < t - self.window:
                row.samples.popleft()
            recent = list(row.samples)
            ok = sum(1 for _, status, _ in recent if status < 500)
            latencies = [latency for _, _, latency in recent]
            out.append(
                {
                    "source": source,
                    "destination": destination,
                    "method": method,
                    "path": path,
                    "rps": round(len(recent) / span, 2),
                    "success_rate": round(ok / len(recent), 4) if recent else None,
                    "p50_ms": _quantile(latencies, 0.5),
                    "p99_ms": _quantile(latencies, 0.99),
                    "count": row.total,
                }
            )
        out.sort(key=lambda r: (-r["rps"], -r["count"], r["path"]))
        return out
