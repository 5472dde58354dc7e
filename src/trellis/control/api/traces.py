"""Trace endpoints: OTLP/HTTP export in, searching and reading recent traces out.

- `POST /v1/traces`: OTLP/HTTP (`application/x-protobuf`, or `application/json` in
  OTLP/JSON; `Content-Encoding: gzip` accepted, inflated within the bound). Answers
  200 with an ExportTraceServiceResponse (partial success when spans were refused),
  400 (not an Export), 413 (over `OTLP_MAX_EXPORT_BYTES` or `OTLP_MAX_SPANS_PER_EXPORT`),
  415 (another media type or encoding); errors carry a `google.rpc.Status` in the
  request's encoding, as OTLP/HTTP specifies.
- `GET /api/v1/traces?service=&status=&minDuration=&since=&until=&limit=`: summaries,
  newest first (`{"items": [...], "matched": N, "limit": L}`; query.py has the rules).
- `GET /api/v1/traces/statistics`: the receiver's and the store's counters.
- `GET /api/v1/traces/{traceId}`: the whole trace, spans in waterfall order (views.py).

Every route needs the admin token: the export because only the admin sends bodies
to the API (the request guard refuses any other before reading it; OTLP exporters
send it as a header), the reads because traffic data is not public. Unauthenticated
exporters use the plaintext gRPC port. Maps HTTP onto `state.traces`; 503 without one.
"""

from __future__ import annotations

import time
import zlib
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from trellis.control.api.deps import State, token_refusal
from trellis.control.api.state import TracesPort
from trellis.control.traces.export import Refusal, Refused, response_json
from trellis.control.traces.query import BadQuery, TraceQuery, parse_trace_id
from trellis.control.traces.views import summary_json, trace_json

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
READ_HINT = (
    "reading traces needs the admin token (traffic data is not public): send "
    "'Authorization: Bearer TOKEN'. `trellis control` printed it on first start and saved it "
    "in the CLI config; the CLI also reads $TRELLIS_TOKEN"
)


def require_admin(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    refusal = token_refusal(state.tokens, authorization)
    if refusal is not None:
        reason = refusal.partition(":")[0]
        raise HTTPException(401, f"{reason}: {READ_HINT}", headers={"WWW-Authenticate": "Bearer"})


otlp_router = APIRouter(dependencies=[Depends(require_admin)])
router = APIRouter(prefix="/api/v1/traces", dependencies=[Depends(require_admin)])


def _traces(state: State) -> TracesPort:
    if state.traces is None:
        raise HTTPException(503, "this control plane runs without a trace store")
    return state.traces


# -- OTLP/HTTP --------------------------------------------------------------------------------

# google.rpc.Code of each refusal, and the HTTP status OTLP/HTTP gives it.
_CODES = {Refusal.TOO_LARGE: (8, 413), Refusal.INVALID: (3, 400)}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status_protobuf(code: int, message: str) -> bytes:
    """A `google.rpc.Status{code, message}`, encoded by hand (two fields; no dependency)."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _status(media: str, http_status: int, code: int, message: str) -> Response:
    if media == JSON:
        return JSONResponse({"code": code, "message": message}, status_code=http_status)
    return Response(status_protobuf(code, message), status_code=http_status, media_type=PROTOBUF)


def _inflate(body: bytes, limit: int) -> bytes | None:
    """The gzip body inflated, or None when it inflates past `limit` (a few KB can be GBs)."""
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        return None
    if not inflater.eof:
        raise zlib.error("the gzip stream ends early")
    return out


@otlp_router.post(
    "/v1/traces",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {PROTOBUF: {}, JSON: {}},
            "description": "an OTLP ExportTraceServiceRequest",
        }
    },
    responses={
        200: {"content": {PROTOBUF: {}, JSON: {}}, "description": "ExportTraceServiceResponse"},
        400: {"description": "not an Export"},
        413: {"description": "too large"},
        415: {"description": "not protobuf or JSON"},
    },
)
async def otlp_export(request: Request, state: State) -> Response:
    traces = _traces(state)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        return _status(
            PROTOBUF, 415, 3, f"OTLP/HTTP takes {PROTOBUF} or {JSON}, not {media or 'no type'}"
        )
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        try:
            inflated = _inflate(body, traces.max_bytes)
        except zlib.error as e:
            return _status(media, 400, 3, f"the gzip body is corrupt: {e}")
        if inflated is None:
            return _status(media, 413, 8, f"the export inflates past {traces.max_bytes} bytes")
        body = inflated
    elif encoding != "identity":
        return _status(media, 415, 3, f"Content-Encoding {encoding} is not supported (gzip is)")
    answer = traces.receive(body) if media == PROTOBUF else traces.receive_json(body)
    if isinstance(answer, Refused):
        code, http_status = _CODES[answer.reason]
        return _status(media, http_status, code, answer.message)
    if media == JSON:
        return Response(response_json(answer), media_type=JSON)
    return Response(answer.SerializeToString(), media_type=PROTOBUF)


# -- reading ----------------------------------------------------------------------------------


def _invalid(parameter: str, where: str, reason: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": (where, parameter), "msg": reason, "type": "value_error"}]
    )


@router.get("")
async def search(
    state: State,
    service: str | None = None,
    status: str | None = None,
    min_duration: Annotated[str | None, Query(alias="minDuration")] = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
) -> JSONResponse:
    traces = _traces(state)
    try:
        query = TraceQuery.parse(
            now_ns=time.time_ns(),
            service=service,
            status=status,
            min_duration=min_duration,
            since=since,
            until=until,
            limit=limit,
        )
    except BadQuery as e:
        raise _invalid(e.parameter, "query", e.reason) from None
    found = traces.store.search(query)
    return JSONResponse(
        {
            "items": [summary_json(t) for t in found.traces],
            "matched": found.matched,
            "limit": query.limit,
        }
    )


@router.get("/statistics")
async def statistics(state: State) -> JSONResponse:
    return JSONResponse(_traces(state).statistics())


@router.get("/{trace_id}")
async def get_trace(state: State, trace_id: str) -> JSONResponse:
    traces = _traces(state)
    try:
        key = parse_trace_id(trace_id)
    except ValueError as e:
        raise _invalid("traceId", "path", str(e)) from None
    trace = traces.store.get(key)
    if trace is None:
        raise HTTPException(
            404,
            f"trace {key.hex()} not found (never received, or evicted: the store keeps "
            "recent traces only)",
        )
    return JSONResponse(trace_json(trace))
