"""Distributed tracing in the sidecars, end to end with real processes: a chain of three
services under `trellis run` (the demo web app, which forwards trace headers) gives one
trace per request whose spans form the right tree with nested durations, in the control
plane's store (`trellis trace ID -o json`) and, configured through MeshConfig, in an
independent OTLP receiver; an app instrumented with the OpenTelemetry SDK joins the
same trace; W3C-only and B3-only callers are joined.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.dataplane import TRELLIS, Sidecar, client_sidecar, run_service
from tests.integration.harness import TOKEN, Mesh, free_port, wait_for
from tests.integration.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

OTEL_APP = str(Path(__file__).with_name("otel_app.py"))


def mesh_config(tracing: str) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  tracing: {tracing}
"""


def trace_json(mesh: Mesh, trace_id: str) -> dict[str, Any] | None:
    done = subprocess.run(
        [TRELLIS, "trace", trace_id, "-o", "json", "--server", mesh.cp.api],
        env={"TRELLIS_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        return None
    return dict(json.loads(done.stdout))


def stored_trace(mesh: Mesh, trace_id: str, spans: int) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        got = trace_json(mesh, trace_id)
        return got if got is not None and len(got["spans"]) >= spans else None

    return wait_for(complete, 20, f"{spans} spans of trace {trace_id} in the store")


def chain(mesh: Mesh) -> tuple[Sidecar, int]:
    """backend <- middle <- frontend, each under `trellis run`; and a client sidecar."""
    backend = run_service(mesh, "backend")
    middle = run_service(
        mesh, "middle", app_args=("--call", f"http://backend:{backend.port}/b?delay=0.05")
    )
    frontend = run_service(mesh, "frontend", app_args=("--call", f"http://middle:{middle.port}/m"))
    return client_sidecar(mesh), frontend.port


def received_traceparent(answer: dict[str, Any]) -> tuple[str, str]:
    """(trace id, parent span id) of the traceparent the frontend app received."""
    _, trace_id, parent, _ = answer["headers"]["traceparent"].split("-")
    return trace_id, parent


EXPECTED_TREE = [
    # (service, kind, parent's (service, kind)), root first
    ("client", "CLIENT", None),
    ("frontend", "SERVER", ("client", "CLIENT")),
    ("frontend", "CLIENT", ("frontend", "SERVER")),
    ("middle", "SERVER", ("frontend", "CLIENT")),
    ("middle", "CLIENT", ("middle", "SERVER")),
    ("backend", "SERVER", ("middle", "CLIENT")),
]


def check_tree(spans: list[dict[str, Any]]) -> None:
    """`spans`: {service, kind, spanId, parentSpanId, start, end}: the right tree, each
    child's interval within its parent's."""
    by_key = {(s["service"], s["kind"]): s for s in spans}
    assert sorted(by_key) == sorted((svc, kind) for svc, kind, _ in EXPECTED_TREE), spans
    assert len(spans) == len(EXPECTED_TREE)
    for service, kind, parent_key in EXPECTED_TREE:
        span = by_key[(service, kind)]
        if parent_key is None:
            assert span["parentSpanId"] in (None, ""), span
            continue
        parent = by_key[parent_key]
        assert span["parentSpanId"] == parent["spanId"], (span, parent)
        assert parent["start"] <= span["start"] <= span["end"] <= parent["end"], [
            (s["service"], s["kind"], s["spanId"], s["parentSpanId"], s["start"], s["end"])
            for s in spans
        ]


def test_one_request_is_one_trace_in_the_store_and_in_an_otlp_receiver(mesh: Mesh) -> None:
    mesh.cp.apply(mesh_config("{sampling: 100}"))
    client, port = chain(mesh)
    with client.client() as c:
        r = c.get(f"http://frontend:{port}/f")
    assert r.status_code == 200, r.text
    answer = r.json()
    trace_id, frontend_server = received_traceparent(answer)
    # Each app got its own sidecar's server span as parent, and an x-request-id.
    middle = answer["calls"][next(iter(answer["calls"]))]
    assert received_traceparent(middle)[0] == trace_id
    request_id = answer["headers"]["x-request-id"]
    assert middle["headers"]["x-request-id"] == request_id
    assert middle["headers"]["b3"].startswith(trace_id + "-")

    stored = stored_trace(mesh, trace_id, len(EXPECTED_TREE))
    spans = [
        {
            "service": s["service"],
            "kind": s["kind"],
            "spanId": s["spanId"],
            "parentSpanId": s["parentSpanId"],
            "start": int(s["startTimeUnixNano"]),
            "end": int(s["endTimeUnixNano"]),
            "attributes": s["attributes"],
        }
        for s in stored["spans"]
    ]
    check_tree(spans)
    by_key = {(s["service"], s["kind"]): s for s in spans}
    assert by_key[("frontend", "SERVER")]["spanId"] == frontend_server
    server = by_key[("backend", "SERVER")]["attributes"]
    assert server["http.request.method"] == "GET"
    assert server["http.response.status_code"] == 200
    assert server["url.path"] == "/b"
    assert server["trellis.request_id"] == request_id
    assert server["peer.service"] == "middle"
    assert server["trellis.principal.source"].startswith("spiffe://")
    assert server["trellis.principal.destination"].startswith("spiffe://")
    outbound = by_key[("middle", "CLIENT")]["attributes"]
    assert outbound["peer.service"].startswith("backend.default")
    assert outbound["http.response.status_code"] == 200
    assert outbound["network.peer.address"] == "127.0.0.1"
    assert "http.route" in outbound
    assert outbound["trellis.principal.destination"].startswith("spiffe://")
    # The backend answers after 50 ms: every span above it lasts at least that.
    for key in EXPECTED_TREE[:-1]:
        span = by_key[key[:2]]
        assert span["end"] - span["start"] >= 50_000_000, span

    # Now to an independent receiver, through MeshConfig.
    receiver = OtlpReceiver(free_port())
    receiver.start()
    try:
        mesh.cp.apply(
            mesh_config(
                f"{{sampling: 100, otlp: {{endpoint: '{receiver.endpoint}', "
                "headers: {x-tenant: t1}}}"
            )
        )

        def sent_there() -> str | None:
            with client.client() as c:
                r = c.get(f"http://frontend:{port}/again")
            tid = received_traceparent(r.json())[0]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if len(receiver.trace(tid)) >= len(EXPECTED_TREE):
                    return tid
                time.sleep(0.1)
            return None  # sent before every proxy had the new config: once more

        tid = wait_for(sent_there, 40, "a trace in the OTLP receiver")
        got = receiver.trace(tid)
        check_tree(
            [
                {
                    "service": s.service,
                    "kind": s.kind,
                    "spanId": s.span_id,
                    "parentSpanId": s.parent_id,
                    "start": s.span.start_time_unix_nano,
                    "end": s.span.end_time_unix_nano,
                }
                for s in got
            ]
        )
    finally:
        receiver.stop()


def test_w3c_only_and_b3_only_callers_are_joined(mesh: Mesh) -> None:
    mesh.cp.apply(mesh_config("{sampling: 0}"))  # only the callers' decisions count
    backend = run_service(mesh, "backend")
    client = client_sidecar(mesh)
    url = f"http://backend:{backend.port}/x"
    w3c_trace, w3c_parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    b3_trace, b3_parent = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    with client.client() as c:
        w3c = c.get(url, headers={"traceparent": f"00-{w3c_trace}-{w3c_parent}-01"}).json()
        b3 = c.get(url, headers={"b3": f"{b3_trace}-{b3_parent}-1"}).json()
        multi = c.get(
            url,
            headers={
                "x-b3-traceid": b3_trace[16:],  # 64-bit: widened
                "x-b3-spanid": b3_parent,
                "x-b3-sampled": "1",
            },
        ).json()
        unsampled = c.get(url, headers={"traceparent": f"00-{'1' * 32}-{w3c_parent}-00"})
    # The app sees both forms, in the caller's trace, with its sidecar's span as parent.
    for answer, trace_id in ((w3c, w3c_trace), (b3, b3_trace), (multi, "0" * 16 + b3_trace[16:])):
        headers = answer["headers"]
        tid, parent = received_traceparent(answer)
        assert tid == trace_id
        assert headers["b3"] == f"{trace_id}-{parent}-1"
        assert headers["x-request-id"]
    # B3 multi is written on to a caller that speaks it.
    assert "x-b3-traceid" not in w3c["headers"]
    headers = multi["headers"]
    assert headers["x-b3-traceid"] == "0" * 16 + b3_trace[16:]
    assert headers["x-b3-spanid"] == received_traceparent(multi)[1]
    assert headers["x-b3-sampled"] == "1"
    assert unsampled.json()["headers"]["traceparent"].endswith("-00")
    # A caller's unsampled context with its request id goes through as it came.
    with client.client() as c:
        came = f"00-{'2' * 32}-{w3c_parent}-00"
        through = c.get(url, headers={"traceparent": came, "x-request-id": "r-1"}).json()
    assert through["headers"]["traceparent"] == came
    assert through["headers"]["x-request-id"] == "r-1"
    # And the stored traces hang under the callers' spans.
    for trace_id, parent in ((w3c_trace, w3c_parent), (b3_trace, b3_parent)):
        stored = stored_trace(mesh, trace_id, 2)
        client_span = next(s for s in stored["spans"] if s["service"] == "client")
        assert client_span["parentSpanId"] == parent
        server = next(s for s in stored["spans"] if s["service"] == "backend")
        assert server["parentSpanId"] == client_span["spanId"]
    assert trace_json(mesh, "1" * 32) is None  # unsampled: nothing recorded


def test_an_app_with_the_opentelemetry_sdk_joins_the_trace(mesh: Mesh) -> None:
    mesh.cp.apply(mesh_config("{sampling: 100}"))
    backend = run_service(mesh, "backend")
    port = free_port()
    app = [
        sys.executable,
        OTEL_APP,
        "--port",
        str(port),
        "--call",
        f"http://backend:{backend.port}/below",
        "--otlp",
        mesh.cp.xds,  # the control plane's receiver (plaintext xDS port)
        "--service",
        "instrumented",
    ]
    run_service(mesh, "instrumented", app=app, port=port)
    client = client_sidecar(mesh)
    with client.client() as c:
        r = c.get(f"http://instrumented:{port}/")
    assert r.status_code == 200, r.text
    answer = r.json()
    app_span = answer["app_span"]
    trace_id, parent = received_traceparent(answer["below"])
    stored = stored_trace(mesh, trace_id, 5)
    spans = {s["spanId"]: s for s in stored["spans"]}
    mine = spans[app_span]
    assert mine["service"] == "instrumented" and mine["name"] == "app handles"
    # Its parent is its sidecar's server span; the outbound call's span is its child.
    assert spans[mine["parentSpanId"]]["kind"] == "SERVER"
    assert spans[mine["parentSpanId"]]["service"] == "instrumented"
    backend_server = next(
        s for s in stored["spans"] if s["service"] == "backend" and s["kind"] == "SERVER"
    )
    client_of_backend = spans[backend_server["parentSpanId"]]
    assert client_of_backend["kind"] == "CLIENT"
    assert client_of_backend["parentSpanId"] == app_span
    assert spans[parent]["service"] == "backend"  # what the backend app got: its sidecar's


def test_invalid_tracing_config_is_refused_with_the_field(mesh: Mesh) -> None:
    for tracing, words in (
        ("{otlp: {endpoint: 'http://x:1/v1/traces'}}", ("endpoint", "HOST:PORT")),
        ("{otlp: {endpoint: 'x:1', protocol: 'http/protobuf'}}", ("endpoint", "http(s) URL")),
        ("{otlp: {endpoint: 'x:1', headers: {'Bad Name': v}}}", ("headers", "header name")),
        ("{otlp: {endpoint: 'x:1', tls: {caCertificates: 'nope'}}}", ("caCertificates", "PEM")),
        ("{sampling: 101}", ("sampling",)),
    ):
        docs = list(yaml.safe_load_all(mesh_config(tracing)))
        with mesh.cp.client() as c:
            r = c.post("/api/v1/apply", json={"documents": docs})
        assert r.status_code >= 400, (tracing, r.text)
        for word in words:
            assert word in r.text, (tracing, r.text)


RETRY_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: backend}
spec:
  parentRefs: [{name: backend, port: 9080}]
  rules:
  - backendRefs: [{name: backend}]
    retry: {codes: [503], attempts: 2, backoff: 5ms}
"""


def test_each_retry_try_is_a_client_span_with_its_endpoint_and_outcome(mesh: Mesh) -> None:
    mesh.cp.apply(mesh_config("{sampling: 100}"))
    backend = run_service(mesh, "backend")
    mesh.cp.apply(RETRY_ROUTE.replace("9080", str(backend.port)))
    client = client_sidecar(mesh)

    def retried() -> dict[str, Any] | None:
        with client.client() as c:
            r = c.get(f"http://backend:{backend.port}/r?fail=odd")
        answer = r.json()
        # The app alternates: an even count is an answer after a failed first try.
        return answer if r.status_code == 200 and answer["count"] % 2 == 0 else None

    answer = wait_for(retried, 20, "a request answered after a retry")
    trace_id, _ = received_traceparent(answer)
    stored = stored_trace(mesh, trace_id, 4)
    tries = sorted(
        (s for s in stored["spans"] if s["kind"] == "CLIENT"),
        key=lambda s: int(s["startTimeUnixNano"]),
    )
    assert len(tries) == 2, stored["spans"]
    first, second = tries
    assert first["attributes"]["http.response.status_code"] == 503
    assert first["status"]["code"] == "ERROR"
    assert "http.request.resend_count" not in first["attributes"]
    assert second["attributes"]["http.response.status_code"] == 200
    assert second["attributes"]["http.request.resend_count"] == 1
    assert second["status"]["code"] != "ERROR"
    for span in tries:
        assert span["attributes"]["network.peer.port"] > 0
        assert span["attributes"]["network.peer.address"] == "127.0.0.1"
    # Each try's server span on the backend hangs under that try.
    servers = [s for s in stored["spans"] if s["kind"] == "SERVER"]
    assert sorted(s["parentSpanId"] for s in servers) == sorted(t["spanId"] for t in tries)
    failed = next(s for s in servers if s["parentSpanId"] == first["spanId"])
    assert failed["attributes"]["http.response.status_code"] == 503
    assert failed["status"]["code"] == "ERROR"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Load:
    """Requests through a sidecar from a few threads, each one's latency kept by phase."""

    def __init__(self, sidecar: Sidecar, url: str, threads: int = 4) -> None:
        self.sidecar, self.url = sidecar, url
        self.phase = "warm"
        self.latencies: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with self.sidecar.client() as c:
            while not self._stop.is_set():
                phase = self.phase
                t0 = time.perf_counter()
                try:
                    ok = c.get(self.url).status_code == 200
                except Exception:
                    ok = False
                took = time.perf_counter() - t0
                if ok:
                    self.latencies.setdefault(phase, []).append(took)
                else:
                    self.failures[phase] = self.failures.get(phase, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def p(self, phase: str, q: float) -> float:
        values = sorted(self.latencies[phase])
        return values[min(len(values) - 1, int(q * len(values)))]


def test_a_dead_or_slow_collector_costs_requests_nothing_and_spans_are_dropped_and_counted(
    mesh: Mesh,
) -> None:
    receiver = OtlpReceiver(free_port())
    receiver.start()
    mesh.cp.apply(mesh_config(f"{{sampling: 100, otlp: {{endpoint: '{receiver.endpoint}'}}}}"))
    backend = run_service(mesh, "backend")
    client = client_sidecar(mesh)
    url = f"http://backend:{backend.port}/load"
    wait_for(lambda: client.admin_get("/stats").json()["tracing"]["enabled"], 20, "tracing on")

    def tracing() -> dict[str, Any]:
        return dict(client.admin_get("/stats").json()["tracing"])

    try:
        with Load(client, url) as load:
            time.sleep(1)  # connections up, config in place
            load.phase = "up"
            wait_for(lambda: receiver.count() > 200, 30, "spans at the receiver")
            time.sleep(2)
            rss_before = _rss_kb(client.proc.pid)
            # The collector hangs (a slow one), then dies: the exporter's one batch in
            # flight waits out its deadline; everything else finds the queue full.
            receiver.stalled.set()
            load.phase = "stalled"
            time.sleep(4)
            receiver.stop()
            load.phase = "down"
            time.sleep(6)
            during = tracing()
            rss_during = _rss_kb(client.proc.pid)
            # Back on the same port: export resumes.
            receiver.stalled.clear()
            received_before = receiver.count()
            receiver.start()
            load.phase = "back"
            wait_for(lambda: receiver.count() > received_before + 100, 30, "export resumed")
            wait_for(
                lambda: tracing()["exported"] > during["exported"],
                30,
                "the client sidecar's export resumed",
            )
        after = tracing()
    finally:
        receiver.stop()

    # Requests kept their latency class while the collector was slow or gone.
    up_p50, up_p99 = load.p("up", 0.5), load.p("up", 0.99)
    for phase in ("stalled", "down"):
        assert not load.failures.get(phase), load.failures
        assert len(load.latencies[phase]) > 100, phase
        assert load.p(phase, 0.5) <= max(3 * up_p50, up_p50 + 0.01), (phase, up_p50)
        assert load.p(phase, 0.99) <= max(3 * up_p99, up_p99 + 0.05), (phase, up_p99)
    # Spans were dropped and counted (the queue full, or a batch that could not go),
    # the queue never past its bound, the sidecar's memory flat.
    dropped = during["dropped_queue_full"] + during["dropped_export_failed"]
    assert dropped > 0, during
    assert during["queued"] <= during["queue_limit"]
    assert during["failures"] > 0 and during["last_error"]
    metrics = client.metrics()
    assert 'trellis_tracing_spans_total{outcome="dropped_queue_full"}' in metrics
    assert rss_during - rss_before < 20_000, (rss_before, rss_during)  # KiB
    assert after["exported"] > during["exported"]


def test_otlp_http_export_with_headers(mesh: Mesh) -> None:
    # The control plane's OTLP/HTTP receiver needs the admin token: the MeshConfig's
    # headers carry it (a collector that authenticates its senders).
    mesh.cp.apply(
        mesh_config(
            f"{{sampling: 100, otlp: {{endpoint: '{mesh.cp.api}/v1/traces', "
            f"protocol: http/protobuf, headers: {{authorization: 'Bearer {TOKEN}'}}}}}}"
        )
    )
    backend = run_service(mesh, "backend")
    client = client_sidecar(mesh)

    def traced() -> dict[str, Any] | None:
        with client.client() as c:
            answer = c.get(f"http://backend:{backend.port}/h").json()
        trace_id, _ = received_traceparent(answer)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = trace_json(mesh, trace_id)
            if got is not None and len(got["spans"]) >= 2:
                return got
            time.sleep(0.2)
        return None

    stored = wait_for(traced, 40, "a trace sent over OTLP/HTTP")
    assert {s["kind"] for s in stored["spans"]} == {"CLIENT", "SERVER"}
    stats = client.admin_get("/stats").json()["tracing"]
    assert stats["target"].endswith("(http)") and stats["exported"] > 0
