"""OTLP trace messages written straight to protobuf's wire format: a sidecar's spans as
the bytes of an `ExportTraceServiceRequest`, without building message objects.

Why: building upb message objects costs several times what writing the bytes does
(a sidecar span has ~14 attributes, each a KeyValue holding an AnyValue); at 100%
sampling that was most of tracing's cost per request. Compiled with mypyc. The
field numbers are OTLP's (opentelemetry/proto/trace/v1/trace.proto,
common/v1/common.proto); tests check the bytes parse back, with protobuf, to what
`export.encode` builds with message objects.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from trellis.proxy.telemetry.tracer import Span

_STATUS_CODE_ERROR: Final = 2
_SMALL: Final = tuple(bytes((i,)) for i in range(128))  # one-byte varints, made once
# Encoded `key` fields of the attribute names a sidecar uses (a fixed set; bounded anyway).
_KEYS: dict[str, bytes] = {}
_KEYS_MAX: Final = 256


def _varint(value: int) -> bytes:
    """Small values stay machine integers compiled (no mask wider than 63 bits)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64: a negative value is its two's complement (10 bytes)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, data: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _str_field(number: int, text: str) -> bytes:
    return _len_field(number, text.encode("utf-8", "replace"))


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _fixed64_field(number: int, value: int) -> bytes:
    return _varint((number << 3) | 1) + value.to_bytes(8, "little")  # times: 0 <= value < 2**64


def key_value(key: str, value: str | int) -> bytes:
    """A KeyValue (key 1, value 2: AnyValue string_value 1 | int_value 3)."""
    any_value = _int_field(3, value) if isinstance(value, int) else _str_field(1, value)
    field = _KEYS.get(key)
    if field is None:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        field = _KEYS[key] = _str_field(1, key)
    return field + _len_field(2, any_value)


def span_bytes(span: Span) -> bytes:
    """One Span message."""
    out = _len_field(1, bytes.fromhex(span.trace_id)) + _len_field(2, bytes.fromhex(span.span_id))
    if span.tracestate:
        out += _str_field(3, span.tracestate)
    if span.parent_id:
        out += _len_field(4, bytes.fromhex(span.parent_id))
    out += (
        _str_field(5, span.name)
        + _int_field(6, span.kind)
        + _fixed64_field(7, span.start_ns)
        + _fixed64_field(8, span.end_ns)
    )
    for key, value in span.attributes:
        out += _len_field(9, key_value(key, value))
    if span.error:
        out += _len_field(15, _str_field(2, span.error) + _int_field(3, _STATUS_CODE_ERROR))
    return out


def resource_bytes(attributes: list[tuple[str, str]]) -> bytes:
    """A Resource message (attributes 1)."""
    return b"".join(_len_field(1, key_value(key, value)) for key, value in attributes)


def export_request(resource: bytes, scope_name: str, spans: list[bytes]) -> bytes:
    """ExportTraceServiceRequest{resource_spans: [{resource, scope_spans: [{scope, spans}]}]}."""
    parts = [_len_field(1, _str_field(1, scope_name))]
    for span in spans:
        parts.append(_len_field(2, span))
    scope_spans = b"".join(parts)
    resource_spans = _len_field(1, resource) + _len_field(2, scope_spans)
    return _len_field(1, resource_spans)
