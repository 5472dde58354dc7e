"""Golden signals and live traffic: what the proxies' telemetry streams tell (API_SIGNALS.md).

- `GET /api/v1/signals?window=60`: per service and per edge over the window (10..900 s).
- `GET /api/v1/signals/history?service=S&minutes=15` (or `source=&destination=`): one
  point per 10 s bucket.
- `GET /api/v1/signals/stream?window=60`: server-sent events, `event: signals` every
  STREAM_INTERVAL seconds with the /signals JSON on one line.
- `GET /api/v1/signals/statistics`: the telemetry streams' counters (refusals, taps, proxies).
- `GET /api/v1/tap?service=S&path=PREFIX&method=M&status=5xx&limit=N&duration=SECONDS&rate=R`
  (R: events/s per proxy, at most 100, the default):
  NDJSON, one object a line: `{"type": "start", ...}`, then `{"type": "event", ...}` per
  request as the proxies see it, and `{"type": "end", "reason": ...}` when the duration
  or the limit is reached. The taps stop when the client goes away.

Everything needs the admin token: traffic data is not public. Maps HTTP onto
`state.telemetry` (control/signals); 503 without one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from trellis.control.api.deps import State, token_refusal
from trellis.control.api.state import TelemetryPort
from trellis.control.signals.aggregate import MAX_WINDOW, MIN_WINDOW
from trellis.control.signals.tap import (
    MAX_DURATION_SECONDS,
    PER_PROXY_PER_SECOND,
    STATUS_CLASSES,
    TapFilter,
    TapSession,
    TooManyTaps,
)

STREAM_INTERVAL = 2.0
DEFAULT_TAP_SECONDS = 600
MAX_TAP_LIMIT = 1_000_000
HEARTBEAT_SECONDS = 5.0
READ_HINT = (
    "golden signals and tap need the admin token (traffic data is not public): send "
    "'Authorization: Bearer TOKEN'. `trellis control` printed it on first start and saved it "
    "in the CLI config; the CLI also reads $TRELLIS_TOKEN"
)
_SERVICE = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$"
)
_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


def require_admin(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    refusal = token_refusal(state.tokens, authorization)
    if refusal is not None:
        reason = refusal.partition(":")[0]
        raise HTTPException(401, f"{reason}: {READ_HINT}", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/api/v1/signals", dependencies=[Depends(require_admin)])
tap_router = APIRouter(prefix="/api/v1/tap", dependencies=[Depends(require_admin)])

Window = Annotated[int, Query(ge=MIN_WINDOW, le=MAX_WINDOW)]


def _telemetry(state: State) -> TelemetryPort:
    if state.telemetry is None:
        raise HTTPException(503, "this control plane runs without telemetry streams")
    return state.telemetry


def _invalid(parameter: str, reason: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", parameter), "msg": reason, "type": "value_error"}]
    )


def canonical_service(value: str, parameter: str = "service") -> str:
    """NAME.NAMESPACE, or NAME (namespace default)."""
    if value == "unknown":
        return value
    if not _SERVICE.match(value):
        raise _invalid(parameter, f"{value!r} is not a service: NAME or NAME.NAMESPACE")
    return value if "." in value else f"{value}.default"


@router.get("")
async def signals(state: State, window: Window = 60) -> JSONResponse:
    return JSONResponse(_telemetry(state).signals(window))


@router.get("/history")
async def history(
    state: State,
    service: str | None = None,
    source: str | None = None,
    destination: str | None = None,
    minutes: Annotated[float, Query(gt=0, le=MAX_WINDOW / 60)] = 15,
) -> JSONResponse:
    telemetry = _telemetry(state)
    if service is None and source is None and destination is None:
        raise _invalid("service", "name a service, or a source and/or a destination")
    if service is not None and (source is not None or destination is not None):
        raise _invalid("service", "either service, or source/destination, not both")
    which: dict[str, str | None] = {
        "service": canonical_service(service) if service else None,
        "source": canonical_service(source, "source") if source else None,
        "destination": canonical_service(destination, "destination") if destination else None,
    }
    return JSONResponse(telemetry.history(minutes, **which))


@router.get("/stream")
async def stream(state: State, window: Window = 60) -> StreamingResponse:
    telemetry = _telemetry(state)

    async def events() -> AsyncIterator[str]:
        while True:
            data = json.dumps(telemetry.signals(window), separators=(",", ":"))
            yield f"event: signals\ndata: {data}\n\n"
            await asyncio.sleep(STREAM_INTERVAL)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/statistics")
async def statistics(state: State) -> JSONResponse:
    return JSONResponse(_telemetry(state).statistics())


@tap_router.get("")
async def tap(
    state: State,
    service: str,
    path: str | None = None,
    method: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=0, le=MAX_TAP_LIMIT)] = 0,
    duration: Annotated[float, Query(gt=0, le=MAX_DURATION_SECONDS)] = DEFAULT_TAP_SECONDS,
    rate: Annotated[int, Query(ge=1, le=PER_PROXY_PER_SECOND)] = PER_PROXY_PER_SECOND,
) -> StreamingResponse:
    telemetry = _telemetry(state)
    name = canonical_service(service)
    if path is not None and (not path.startswith("/") or len(path) > 1024):
        raise _invalid("path", "a path prefix starts with '/' (at most 1024 characters)")
    if method is not None and not _METHOD.match(method):
        raise _invalid("method", f"{method!r} is not an HTTP method")
    if status is not None and status.lower() not in STATUS_CLASSES:
        raise _invalid("status", f"status is one of {', '.join(STATUS_CLASSES)}")
    tap_filter = TapFilter(
        name,
        path_prefix=path or "",
        method=(method or "").upper(),
        status_class=STATUS_CLASSES[status.lower()] if status else 0,
    )
    try:
        session = telemetry.taps.start(
            tap_filter, duration=duration, limit=limit, max_per_proxy=rate
        )
    except TooManyTaps as e:
        raise HTTPException(429, str(e)) from None
    return StreamingResponse(
        _tap_lines(telemetry, session),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _tap_lines(telemetry: TelemetryPort, session: TapSession) -> AsyncIterator[str]:
    """The session's lines until its duration or limit ends it; stops the taps on any exit
    (the client went away: the response is cancelled, `finally` runs)."""
    try:
        start: dict[str, Any] = {"type": "start", "tap": session.id, **session.summary()}
        yield _line(start)
        deadline = session.started + session.duration
        reason = "duration"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                event = await asyncio.wait_for(session.queue.get(), min(left, HEARTBEAT_SECONDS))
            except TimeoutError:
                continue
            session.delivered += 1
            yield _line(event)
            if session.limit and session.delivered >= session.limit:
                reason = "limit"
                break
        yield _line({"type": "end", "reason": reason, **session.summary()})
    finally:
        telemetry.taps.stop(session)


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":")) + "\n"
