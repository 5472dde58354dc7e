"""What the control plane accepts from the network: every request bound, named, with its reason.

One table for all of the control plane's ports (the REST API, ADS on the plaintext
and the secure port, the CA service), so the servers, their clients and the
design note agree on the numbers. A request past a bound is refused whole with
a status that names the bound (413, RESOURCE_EXHAUSTED, ...); none is parsed
past it.

Pure: constants, and `json_depth`, a scan of JSON bytes that needs no parse.
Knows no HTTP or gRPC library; the servers apply these bounds.
"""

from __future__ import annotations

import json
from typing import Any, Final

from trellis.model.limits import MAX_APPLY_BYTES, MAX_APPLY_DOCUMENTS

MiB: Final = 1024 * 1024

# -- the REST API ---------------------------------------------------------------------------

# The largest legitimate body is a `trellis apply` of many documents, which the CLI sends
# as one JSON request (all of them, or none): the bound both sides share is the model's
# (model/limits.py: the CLI refuses a larger set before sending it). Mesh documents are
# 0.3-1 KB of JSON; 10,000 of them are 3.5-10 MB.
API_MAX_BODY_BYTES: Final = MAX_APPLY_BYTES
# Documents in one `POST /api/v1/apply` or `/api/v1/delete` (model/limits.py). Past it the
# request is refused before any document is read, instead of answering one problem per
# document (30,000 empty documents made a 10 MB answer).
API_MAX_DOCUMENTS: Final = MAX_APPLY_DOCUMENTS
# The request line and headers together (uvicorn's h11 parser holds them in memory
# until the head is complete): bearer tokens and paths are short.
API_MAX_HEAD_BYTES: Final = 16 * 1024

# -- JSON, on the API and in the CA service ---------------------------------------------------

# Brackets nested deeper than this are refused before parsing. A mesh document nests
# 7 deep inside an apply request ({documents: [{spec: {rules: [{matches: [{headers:
# [{...}]}]}]}}]}); Python's parser and the model recurse, and would fail at ~1,000
# with a RecursionError instead of an answer.
MAX_JSON_DEPTH: Final = 32

# -- gRPC: ADS (both ports) and the CA service ------------------------------------------------

# A DiscoveryRequest carries the node and every name the client subscribes to of one
# type, and a NACK's error text. A sidecar subscribes to the services its app calls,
# a proxyless app to its targets: 4 MiB holds 50,000 names of 80 bytes. gRPC's
# default is also 4 MiB; it is set explicitly so the bound is ours (as Istio's pilot).
# It applies to the whole server, so the secure port's CA service has it too.
XDS_MAX_REQUEST_BYTES: Final = 4 * MiB
# A Sign request is a P-256 CSR in PEM (~500 bytes), a join token (~70) and two names;
# Bundle takes `{}`. The CA service refuses more before parsing.
CA_MAX_REQUEST_BYTES: Final = 64 * 1024

# -- OTLP trace export (the built-in trace store's receiver: both gRPC ports, POST /v1/traces) --

# One ExportTraceServiceRequest. SDKs send batches of at most 512 spans (their default
# `max_export_batch_size`), 0.2-0.4 MB with a sidecar's ~15 attributes a span; the
# collector's gRPC receiver takes 4 MiB too. Checked before the request is parsed.
OTLP_MAX_EXPORT_BYTES: Final = 4 * MiB
# Spans in one Export: twice the collector's default batch (8,192). 4 MiB of minimal
# spans (~40 bytes each) would be ~100,000 spans to index in one go on the event loop.
OTLP_MAX_SPANS_PER_EXPORT: Final = 16_384


class JsonTooDeep(ValueError):
    """The JSON nests brackets deeper than the bound allows."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"JSON nested {depth} levels deep; at most {limit} are accepted")
        self.depth = depth
        self.limit = limit


_KEEP_QUOTES_AND_BRACKETS = bytes(range(256)).translate(None, b'"[]{}')


def json_depth(data: bytes) -> int:
    """How deep `data`'s arrays and objects nest (0 for a scalar), without parsing it.

    Brackets inside strings do not count. For bytes that are not JSON the answer is
    some number that the parser, which rejects them anyway, never needs.
    Cost: ~12 ns per byte (a 5 MB apply of 10,000 documents: 63 ms; parsing it: 119 ms).
    """
    # Escaped backslashes first, so that a quote left behind a backslash is an escaped one;
    # then every remaining quote opens or closes a string.
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    plain = plain.translate(None, _KEEP_QUOTES_AND_BRACKETS)
    brackets = b"".join(plain.split(b'"')[::2])  # the parts outside strings
    depth = deepest = 0
    for b in brackets:
        if b == 0x5B or b == 0x7B:  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep when `data` nests deeper than `limit`."""
    depth = json_depth(data)
    if depth > limit:
        raise JsonTooDeep(depth, limit)


def loads_bounded(data: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` after the depth check: JsonTooDeep, or ValueError when it is not JSON."""
    check_json_depth(data, limit)
    return json.loads(data)


def size_text(n: int) -> str:
    """`16 MiB (16777216 bytes)`: a bound as people and programs read it."""
    for unit, scale in (("MiB", MiB), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit} ({n} bytes)"
    return f"{n} bytes"
