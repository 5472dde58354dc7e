"""The built-in trace store through a real `trellis control`: OTLP in, `trellis traces|trace` out.

Spans come as applications send them: from opentelemetry-sdk's OTLP gRPC exporter (three
services, each its own TracerProvider and exporter, so one trace arrives in three Exports,
children first) and from a raw grpcio client built from opentelemetry-proto's service
definition; OTLP/HTTP from httpx. The real CLI runs as a subprocess and shows them: the
filters, the waterfall's tree, offsets, bars and slowest span. Reads and OTLP/HTTP need the
admin token; bad Exports get gRPC's and HTTP's own refusals and the receiver serves on.
"""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tests.cli.control_plane import TOKEN, TRELLIS, ControlPlane
from tests.control.ca.secure_world import sign
from tests.control.traces.otlp_spans import TestSpan, request, trace_id

from trellis.control.limits import OTLP_MAX_EXPORT_BYTES, OTLP_MAX_SPANS_PER_EXPORT

pytestmark = pytest.mark.integration

MS = 1_000_000
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def export(
    cp: ControlPlane, req: trace_service_pb2.ExportTraceServiceRequest
) -> trace_service_pb2.ExportTraceServiceResponse:
    """One Export on the plaintext xDS port, with a stub made from opentelemetry-proto."""
    with grpc.insecure_channel(cp.xds_address) as channel:
        response: trace_service_pb2.ExportTraceServiceResponse = (
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(req, timeout=10)
        )
        return response


def export_bytes(cp: ControlPlane, data: bytes) -> bytes:
    with grpc.insecure_channel(cp.xds_address) as channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        answer: bytes = call(data, timeout=20)
        return answer


def api(cp: ControlPlane, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{cp.api_url}{path}", params=params, headers=ADMIN, timeout=10)


# -- one trace from the SDK, two from a raw client --------------------------------------------


@dataclass
class Shop:
    sdk_trace: str  # productpage -> reviews (503) -> ratings, 300 ms, from three SDK exporters
    fast: str  # web, 5 ms, 200
    rootless: str  # batch, no root, 150 ms extent
    start_ns: int


def sdk_trace(cp: ControlPlane, t0: int) -> str:
    """productpage [0, 300) ms calls reviews [10, 250) which serves [20, 240) (503, error) and
    calls ratings [30, 60), served [35, 55). reviews' server span has 190 ms of its own."""
    providers = {
        name: TracerProvider(resource=Resource.create({"service.name": name}))
        for name in ("productpage", "reviews", "ratings")
    }
    for provider in providers.values():
        exporter = OTLPSpanExporter(endpoint=cp.xds_address, insecure=True, timeout=10)
        provider.add_span_processor(SimpleSpanProcessor(exporter))

    def tracer(service: str) -> otel.Tracer:
        return providers[service].get_tracer("tests")

    def start(
        service: str, name: str, kind: otel.SpanKind, at: int, parent: otel.Span | None
    ) -> otel.Span:
        context = otel.set_span_in_context(parent) if parent is not None else None
        return tracer(service).start_span(name, context=context, kind=kind, start_time=t0 + at * MS)

    server = otel.SpanKind.SERVER
    client = otel.SpanKind.CLIENT
    front = start("productpage", "GET /productpage", server, 0, None)
    front.set_attribute("http.response.status_code", 200)
    call_reviews = start("productpage", "GET reviews", client, 10, front)
    reviews = start("reviews", "GET /reviews", server, 20, call_reviews)
    call_ratings = start("reviews", "GET ratings", client, 30, reviews)
    ratings = start("ratings", "GET /ratings", server, 35, call_ratings)
    # Ended (and so exported) children first: the trace arrives in five Exports, bottom up.
    ratings.set_attribute("http.response.status_code", 200)
    ratings.end(end_time=t0 + 55 * MS)
    call_ratings.set_attribute("http.response.status_code", 200)
    call_ratings.end(end_time=t0 + 60 * MS)
    for span in (reviews, call_reviews):
        span.set_attribute("http.response.status_code", 503)
        span.set_status(otel.Status(otel.StatusCode.ERROR))
    reviews.end(end_time=t0 + 240 * MS)
    call_reviews.end(end_time=t0 + 250 * MS)
    front.end(end_time=t0 + 300 * MS)
    for provider in providers.values():
        provider.shutdown()
    return format(front.get_span_context().trace_id, "032x")


@pytest.fixture(scope="module")
def shop(cp: ControlPlane) -> Iterator[Shop]:
    t0 = time.time_ns() - 10 * 1000 * MS
    sdk = sdk_trace(cp, t0)
    base_ms = (t0 - 1_800_000_000_000_000_000) / MS  # TestSpan times count from BASE_NS
    fast = request(
        [
            TestSpan(
                0xF1,
                1,
                start_ms=base_ms + 400,
                end_ms=base_ms + 405,
                service="web",
                http_status=200,
            ),
            TestSpan(
                0xF1,
                2,
                1,
                start_ms=base_ms + 401,
                end_ms=base_ms + 404,
                service="web",
                http_status=200,
            ),
        ]
    )
    rootless = request(
        [
            TestSpan(
                0xB2,
                5,
                4,
                start_ms=base_ms + 500,
                end_ms=base_ms + 600,
                service="batch",
                name="step one",
            ),
            TestSpan(
                0xB2,
                6,
                4,
                start_ms=base_ms + 610,
                end_ms=base_ms + 650,
                service="batch",
                name="step two",
            ),
        ]
    )
    assert not export(cp, fast).HasField("partial_success")
    assert not export(cp, rootless).HasField("partial_success")
    yield Shop(sdk, trace_id(0xF1).hex(), trace_id(0xB2).hex(), t0)


def listed(cp: ControlPlane, *args: str) -> list[str]:
    """The trace ids `trellis traces ARGS -o json` lists."""
    got = cp.run("traces", *args, "-o", "json")
    assert got.returncode == 0, got.stderr
    return [item["traceId"] for item in json.loads(got.stdout)["items"]]


def test_trellis_traces_lists_what_the_sdk_and_a_raw_client_sent(
    cp: ControlPlane, shop: Shop
) -> None:
    got = cp.run("traces")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].split() == [
        "TRACE",
        "ID",
        "ROOT",
        "START",
        "DURATION",
        "SPANS",
        "SERVICES",
        "STATUS",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    sdk_row = rows[shop.sdk_trace].split()
    assert sdk_row[1:4] == ["productpage:", "GET", "/productpage"]
    assert sdk_row[-4:] == ["300ms", "5", "productpage,ratings,reviews", "2xx,5xx,error"]
    assert rows[shop.fast].split()[-4:] == ["5ms", "2", "web", "2xx"]
    assert "batch: step one (root not received)" in rows[shop.rootless]
    assert rows[shop.rootless].split()[-4:] == ["150ms", "2", "batch", "-"]
    # newest first
    assert listed(cp)[:3] == [shop.rootless, shop.fast, shop.sdk_trace]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--service", "ratings"), ["sdk_trace"]),
        (("--service", "web"), ["fast"]),
        (("--status", "5xx"), ["sdk_trace"]),
        (("--status", "error"), ["sdk_trace"]),
        (("--min-duration", "100ms"), ["rootless", "sdk_trace"]),
        (("--min-duration", "0.2s", "--service", "batch"), []),
        (("--service", "web", "--status", "2xx", "--min-duration", "1ms"), ["fast"]),
        (("--since", "SINCE", "--limit", "2"), ["rootless", "fast"]),
    ],
)
def test_trellis_traces_filters(
    cp: ControlPlane, shop: Shop, args: tuple[str, ...], expected: list[str]
) -> None:
    # A window that holds the shop's traces however long the module has run so far (a
    # fixed 30 s failed on a loaded machine: the traces had aged out of it).
    since = f"{(time.time_ns() - shop.start_ns) // (1000 * MS) + 20}s"
    args = tuple(since if a == "SINCE" else a for a in args)
    ours = {shop.sdk_trace, shop.fast, shop.rootless}
    assert [t for t in listed(cp, *args) if t in ours] == [getattr(shop, e) for e in expected]


def test_trellis_traces_says_when_nothing_matches_and_refuses_bad_filters(
    cp: ControlPlane, shop: Shop
) -> None:
    none = cp.run("traces", "--service", "nobody")
    assert none.returncode == 0 and none.stdout == "" and "No traces found." in none.stderr
    bad = cp.run("traces", "--min-duration", "soon")
    assert bad.returncode == 1
    assert "minDuration" in bad.stderr and "not a duration" in bad.stderr
    bad = cp.run("traces", "--status", "teapot")
    assert bad.returncode == 1 and "5xx" in bad.stderr


def test_trellis_trace_draws_the_waterfall(cp: ControlPlane, shop: Shop) -> None:
    got = cp.run("trace", shop.sdk_trace)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith(
        f"trace {shop.sdk_trace}  productpage: GET /productpage  300ms, 5 spans, 3 services"
    )
    assert lines[0].endswith("ERROR")
    assert lines[1].split() == [
        "OFFSET",
        "DURATION",
        "SELF",
        "SERVICE",
        "SPAN",
        "STATUS",
        "TIMELINE",
    ]
    rows = lines[2:7]
    cells = [row.split("|")[0].split() for row in rows]
    assert cells == [
        ["0.000ms", "300ms", "60ms", "productpage", "GET", "/productpage", "[server]", "200"],
        [
            "10.000ms",
            "240ms",
            "20ms",
            "productpage",
            "└",
            "GET",
            "reviews",
            "[client]",
            "503",
            "ERROR",
        ],
        [
            "20.000ms",
            "220ms",
            "190ms",
            "reviews",
            "└",
            "GET",
            "/reviews",
            "[server]",
            "503",
            "ERROR",
        ],
        ["30.000ms", "30ms", "10ms", "reviews", "└", "GET", "ratings", "[client]", "200"],
        ["35.000ms", "20ms", "20ms", "ratings", "└", "GET", "/ratings", "[server]", "200"],
    ]
    # indented by depth
    assert [row.index("GET") for row in rows] == [
        rows[0].index("GET") + 2 * d + (2 if d else 0) for d in range(5)
    ]
    # bars on a 40-cell timeline of 300 ms: reviews' server span is cells 2..32
    bars = ["|" + row.split("|")[1] + "|" for row in rows]
    assert bars[0] == "|" + "█" * 40 + "|"
    assert bars[2] == "|" + " " * 2 + "█" * 30 + " " * 8 + "|"
    assert bars[4] == "|" + " " * 4 + "█" * 4 + " " * 32 + "|"
    # the slowest span (190 ms of its own) is marked, and only it
    assert [row.endswith("◀ slowest") for row in rows] == [False, False, True, False, False]
    assert (
        lines[7].startswith("slowest span: reviews GET /reviews") and "63% of the trace" in lines[7]
    )


def test_trellis_trace_json(cp: ControlPlane, shop: Shop) -> None:
    got = cp.run("trace", shop.sdk_trace, "-o", "json")
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    spans = body["spans"]
    assert [(s["name"], s["depth"], s["offsetNs"], s["durationNs"]) for s in spans] == [
        ("GET /productpage", 0, 0, 300 * MS),
        ("GET reviews", 1, 10 * MS, 240 * MS),
        ("GET /reviews", 2, 20 * MS, 220 * MS),
        ("GET ratings", 3, 30 * MS, 30 * MS),
        ("GET /ratings", 4, 35 * MS, 20 * MS),
    ]
    for parent, child in itertools.pairwise(spans):
        assert child["parentSpanId"] == parent["spanId"]
    assert body["slowestSpanId"] == spans[2]["spanId"] and spans[2]["slowest"]
    assert spans[2]["resource"]["service.name"] == "reviews"
    assert spans[2]["status"]["code"] == "ERROR"
    assert body["startTimeUnixNano"] == str(shop.start_ns)


def test_trellis_trace_shows_orphans_and_unknown_ids(cp: ControlPlane, shop: Shop) -> None:
    got = cp.run("trace", shop.rootless)
    assert got.returncode == 0, got.stderr
    rows = got.stdout.splitlines()[2:4]
    assert "step one [server] (orphan: parent 0000000000000004 not received)" in rows[0]
    assert rows[1].split()[:3] == ["110.000ms", "40ms", "40ms"]
    missing = cp.run("trace", "ab" * 16)
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = cp.run("trace", "xyz")
    assert bad.returncode == 1 and "not a trace id" in bad.stderr
    b3 = cp.run("trace", shop.fast[16:], "-o", "json")  # a 64-bit B3 id: zero-padded
    assert b3.returncode == 0 and json.loads(b3.stdout)["traceId"] == shop.fast


# -- access ----------------------------------------------------------------------------------


def test_reading_traces_needs_the_admin_token(cp: ControlPlane, shop: Shop) -> None:
    for path in ("/api/v1/traces", f"/api/v1/traces/{shop.fast}", "/api/v1/traces/statistics"):
        anonymous = httpx.get(f"{cp.api_url}{path}", timeout=10)
        assert anonymous.status_code == 401, path
        assert "reading traces needs the admin token" in anonymous.json()["error"]
        wrong = httpx.get(
            f"{cp.api_url}{path}", headers={"Authorization": "Bearer nope"}, timeout=10
        )
        assert wrong.status_code == 401
        assert api(cp, path).status_code == 200
    env = {**cp.env, "TRELLIS_TOKEN": "nope"}
    for args in (("traces",), ("trace", shop.fast)):
        got = cp.run(*args, env=env)
        assert got.returncode == 1 and "invalid admin token" in got.stderr


# -- bad exports -----------------------------------------------------------------------------


def stats(cp: ControlPlane) -> dict[str, int]:
    answer = api(cp, "/api/v1/traces/statistics")
    assert answer.status_code == 200
    body: dict[str, int] = answer.json()
    return body


def test_bad_grpc_exports_are_refused_and_the_receiver_serves_on(cp: ControlPlane) -> None:
    before = stats(cp)
    with pytest.raises(grpc.RpcError) as garbage:
        export_bytes(cp, b"\x0a\xff\xff\xff\xff\x0f")
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP ExportTraceServiceRequest" in (garbage.value.details() or "")
    with pytest.raises(grpc.RpcError) as oversized:
        export_bytes(cp, b"\x0a" + b"\x80" * 4 + b"\x01" + b"x" * OTLP_MAX_EXPORT_BYTES)
    assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    many = request([TestSpan(0xC0, n) for n in range(1, OTLP_MAX_SPANS_PER_EXPORT + 2)])
    with pytest.raises(grpc.RpcError) as too_many:
        export(cp, many)
    assert too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {OTLP_MAX_SPANS_PER_EXPORT}" in (too_many.value.details() or "")
    # bad ids: a partial success, the good span stored
    partly = request([TestSpan(0xC1, 1, service="partly"), TestSpan(0xC1, 2, service="partly")])
    partly.resource_spans[0].scope_spans[0].spans[1].span_id = b"\x00" * 8
    answer = export(cp, partly)
    assert answer.partial_success.rejected_spans == 1
    assert "span_id" in answer.partial_success.error_message
    after = stats(cp)
    assert after["exportsInvalid"] == before["exportsInvalid"] + 1
    assert after["exportsTooLarge"] == before["exportsTooLarge"] + 1  # gRPC refused the other
    assert after["spansRejected"] == before["spansRejected"] + 1
    assert listed(cp, "--service", "partly") == [trace_id(0xC1).hex()]


def post(
    cp: ControlPlane, body: bytes, media: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{cp.api_url}/v1/traces",
        content=body,
        headers={**ADMIN, "Content-Type": media, **(headers or {})},
        timeout=30,
    )


def status_of(response: httpx.Response) -> status_pb2.Status:
    assert response.headers["content-type"] == "application/x-protobuf"
    return status_pb2.Status.FromString(response.content)


def test_otlp_http(cp: ControlPlane) -> None:
    proto = request([TestSpan(0xD1, 1, service="over-http", http_status=201)]).SerializeToString()
    answer = post(cp, proto, "application/x-protobuf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer.content)
    assert not response.HasField("partial_success")
    zipped = request([TestSpan(0xD2, 1, service="over-http")]).SerializeToString()
    assert (
        post(
            cp, gzip.compress(zipped), "application/x-protobuf", {"Content-Encoding": "gzip"}
        ).status_code
        == 200
    )
    as_json = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "over-http"}}
                        ]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id(0xD3).hex(),
                                    "spanId": "00000000000000d3",
                                    "name": "json",
                                    "startTimeUnixNano": "1800000000000000000",
                                    "endTimeUnixNano": "1800000000500000000",
                                    "status": {"code": 2},
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()
    answer = post(cp, as_json, "application/json")
    assert answer.status_code == 200 and answer.json() == {}
    assert listed(cp, "--service", "over-http") == [trace_id(n).hex() for n in (0xD3, 0xD2, 0xD1)]
    assert listed(cp, "--service", "over-http", "--status", "error") == [trace_id(0xD3).hex()]


def test_otlp_http_refusals(cp: ControlPlane) -> None:
    proto = request([TestSpan(0xE1, 1, service="refused")]).SerializeToString()
    anonymous = httpx.post(
        f"{cp.api_url}/v1/traces",
        content=proto,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert anonymous.status_code == 401
    garbage = post(cp, b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf")
    assert garbage.status_code == 400
    assert status_of(garbage).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not an OTLP ExportTraceServiceRequest" in status_of(garbage).message
    oversized = post(cp, b"\x00" * (OTLP_MAX_EXPORT_BYTES + 1), "application/x-protobuf")
    assert oversized.status_code == 413
    assert status_of(oversized).code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    bomb = gzip.compress(b"\x00" * (OTLP_MAX_EXPORT_BYTES + 1))  # 4 KB that inflate to 4 MiB
    assert len(bomb) < 10_000
    assert post(cp, bomb, "application/x-protobuf", {"Content-Encoding": "gzip"}).status_code == 413
    assert (
        post(cp, b"not gzip", "application/x-protobuf", {"Content-Encoding": "gzip"}).status_code
        == 400
    )
    assert post(cp, proto, "application/x-protobuf", {"Content-Encoding": "br"}).status_code == 415
    assert post(cp, proto, "text/plain").status_code == 415
    bad_json = post(cp, b'{"resourceSpans": 5}', "application/json")
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == 3 and "resourceSpans" in bad_json.json()["message"]
    # and it serves on
    assert post(cp, proto, "application/x-protobuf").status_code == 200
    assert listed(cp, "--service", "refused") == [trace_id(0xE1).hex()]


# -- the secure port -------------------------------------------------------------------------


def join_token(cp: ControlPlane, service: str) -> str:
    got = cp.run("token", "create", "--service", service, "--ttl", "1h")
    assert got.returncode == 0, got.stderr
    return got.stdout.strip()


async def test_the_secure_port_takes_exports_from_mesh_members_only(cp: ControlPlane) -> None:
    bundle = httpx.get(f"{cp.api_url}/api/v1/ca/bundle", timeout=10).content
    req = request([TestSpan(0xA5, 1, service="secure-member")])
    async with grpc.aio.secure_channel(
        cp.secure_address, grpc.ssl_channel_credentials(bundle)
    ) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await trace_service_pb2_grpc.TraceServiceStub(anonymous).Export(req, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "mesh client certificate" in (refused.value.details() or "")
        svid = await sign(anonymous, token=join_token(cp, "member"))
    creds = grpc.ssl_channel_credentials(bundle, svid.key_pem, svid.chain_pem)
    async with grpc.aio.secure_channel(cp.secure_address, creds) as member:
        answer = await trace_service_pb2_grpc.TraceServiceStub(member).Export(req, timeout=10)
        assert not answer.HasField("partial_success")
    assert listed(cp, "--service", "secure-member") == [trace_id(0xA5).hex()]


@pytest.mark.parametrize(
    ("value", "message"), [("lots", "is not a size"), ("1KiB", "less than the smallest store")]
)
def test_a_bad_store_bound_is_refused_before_anything_starts(value: str, message: str) -> None:
    got = subprocess.run(
        [TRELLIS, "control", "--trace-store-bytes", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 2
    assert "--trace-store-bytes" in got.stderr and message in got.stderr
