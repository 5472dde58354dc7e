"""One OTLP trace Export, whatever carried it: bytes in, an answer or a refusal out.

`OtlpReceiver.receive(data)` takes the body of an Export (the gRPC message, or the
body of `POST /v1/traces` as protobuf; `receive_json` the OTLP/JSON encoding) and:
  1. refuses more than `OTLP_MAX_EXPORT_BYTES` unparsed (`TOO_LARGE`);
  2. parses it; bytes that are not an ExportTraceServiceRequest are `INVALID`;
  3. refuses more than `OTLP_MAX_SPANS_PER_EXPORT` spans (`TOO_LARGE`) before any
     is stored: a request is stored whole or refused whole;
  4. stores the spans (`TraceStore.ingest`); spans the store refuses (bad ids, a
     full trace) are answered as OTLP's partial success (`rejected_spans` and why),
     which exporters log and do not retry.
The transports map the refusals: gRPC RESOURCE_EXHAUSTED / INVALID_ARGUMENT, HTTP
413 / 400. Counts every export and refusal (`statistics`). Knows no transport.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from trellis.control.limits import (
    OTLP_MAX_EXPORT_BYTES,
    OTLP_MAX_SPANS_PER_EXPORT,
    JsonTooDeep,
    loads_bounded,
    size_text,
)
from trellis.control.traces.store import TraceStore


class Refusal(enum.Enum):
    TOO_LARGE = "too large"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    message: str


class OtlpReceiver:
    def __init__(self, store: TraceStore, max_bytes: int = OTLP_MAX_EXPORT_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._counts = {"exports": 0, "exportsTooLarge": 0, "exportsInvalid": 0}

    def receive(self, data: bytes) -> ExportTraceServiceResponse | Refused:
        """Store the spans of one protobuf-encoded Export (see the module docstring)."""
        if len(data) > self.max_bytes:
            return self._refuse(Refusal.TOO_LARGE, self._too_many_bytes(len(data)))
        try:
            request = ExportTraceServiceRequest.FromString(data)
        except DecodeError as e:
            return self._refuse(Refusal.INVALID, f"not an OTLP ExportTraceServiceRequest: {e}")
        return self.store_request(request)

    def receive_json(self, data: bytes) -> ExportTraceServiceResponse | Refused:
        """The same for OTLP/JSON (ids in hex, as the OTLP specification encodes them)."""
        if len(data) > self.max_bytes:
            return self._refuse(Refusal.TOO_LARGE, self._too_many_bytes(len(data)))
        try:
            request = parse_otlp_json(data)
        except JsonTooDeep as e:
            return self._refuse(Refusal.INVALID, str(e))
        except (ValueError, json_format.ParseError) as e:
            return self._refuse(Refusal.INVALID, f"not an OTLP/JSON ExportTraceServiceRequest: {e}")
        return self.store_request(request)

    def store_request(
        self, request: ExportTraceServiceRequest
    ) -> ExportTraceServiceResponse | Refused:
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        if spans > OTLP_MAX_SPANS_PER_EXPORT:
            return self._refuse(
                Refusal.TOO_LARGE,
                f"{spans} spans in one export; the trace store accepts at most "
                f"{OTLP_MAX_SPANS_PER_EXPORT} (send smaller batches)",
            )
        self._counts["exports"] += 1
        result = self.store.ingest(request)
        response = ExportTraceServiceResponse()
        if result.refused:
            response.partial_success.rejected_spans = result.refused
            response.partial_success.error_message = "; ".join(result.problems)
        return response

    def _too_many_bytes(self, size: int) -> str:
        return (
            f"the export is {size} bytes; the trace store accepts at most "
            f"{size_text(self.max_bytes)} in one (send smaller batches)"
        )

    def _refuse(self, reason: Refusal, message: str) -> Refused:
        key = "exportsTooLarge" if reason is Refusal.TOO_LARGE else "exportsInvalid"
        self._counts[key] += 1
        return Refused(reason, message)

    def statistics(self) -> dict[str, int]:
        """Exports stored, and refused whole (too large, invalid); then the store's figures."""
        return {**self._counts, **self.store.statistics()}


# -- OTLP/JSON ----------------------------------------------------------------------------------

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def parse_otlp_json(data: bytes) -> ExportTraceServiceRequest:
    """An Export from OTLP/JSON. It is protobuf's JSON mapping but for the ids, which are
    hex rather than base64: they are turned into base64, then protobuf parses the rest.
    ValueError (or json_format.ParseError) when it is not one."""
    body = loads_bounded(data)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    for resource_spans in _objects(body.get("resourceSpans"), "resourceSpans"):
        for scope_spans in _objects(resource_spans.get("scopeSpans"), "scopeSpans"):
            for span in _objects(scope_spans.get("spans"), "spans"):
                _hex_ids_to_base64(span)
                for link in _objects(span.get("links"), "links"):
                    _hex_ids_to_base64(link)
    request = ExportTraceServiceRequest()
    json_format.ParseDict(body, request, ignore_unknown_fields=True)
    return request


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{what} must be a list of objects")
    return value


def _hex_ids_to_base64(obj: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        value = obj.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a hex string")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{name} {value[:40]!r} is not hex") from None
        obj[name] = base64.b64encode(raw).decode()


def response_json(response: ExportTraceServiceResponse) -> bytes:
    return json.dumps(json_format.MessageToDict(response)).encode()
