"""The adapter between the metrics registry and the telemetry stream: deltas per edge, read
from a real RequestMetrics (labels built by name, so the test holds for any label order)."""

from __future__ import annotations

from trellis.proxy.live.signals_source import SignalsSource
from trellis.proxy.telemetry.metrics import LABELS, RequestMetrics
from trellis.telemetry_api import telemetry_pb2 as pb


def labels(**values: str) -> tuple[str, ...]:
    return tuple(values.get(name, "unknown") for name in LABELS)


OUT = {
    "reporter": "source",
    "destination_service_name": "api",
    "destination_service_namespace": "default",
    "connection_security_policy": "mutual_tls",
    "response_flags": "-",
}
IN = {
    "reporter": "destination",
    "source_app": "web",
    "source_canonical_service": "web",
    "source_workload_namespace": "default",
    "connection_security_policy": "none",
}


def test_deltas_per_edge_since_the_last_report() -> None:
    metrics = RequestMetrics()
    source = SignalsSource(metrics, "web.default")
    assert source.deltas() == []
    for _ in range(9):
        metrics.record(labels(**OUT, response_code="200"), 3.0, 0, 0)
    metrics.record(labels(**OUT, response_code="503"), 700.0, 0, 0)
    (edge,) = source.deltas()
    assert (edge.reporter, edge.source, edge.destination, edge.mtls) == (
        pb.SOURCE, "web.default", "api.default", True,
    )  # fmt: skip
    assert (edge.requests, edge.errors, edge.denied) == (10, 1, 0)
    assert sum(edge.buckets) == 10 and len(edge.buckets) == len(source.bounds_ms) + 1
    # Nothing new: nothing sent. Then only what is new.
    assert source.deltas() == []
    metrics.record(labels(**OUT, response_code="200"), 3.0, 0, 0)
    (edge,) = source.deltas()
    assert (edge.requests, edge.errors) == (1, 0)


def test_inbound_denials_and_unknown_callers() -> None:
    metrics = RequestMetrics()
    source = SignalsSource(metrics, "api.default")
    for _ in range(4):
        metrics.record(labels(**IN, response_code="403", response_flags="RBAC"), 1.0, 0, 0)
    metrics.record(labels(**IN, response_code="403", response_flags="-"), 1.0, 0, 0)  # the app's
    outside = {**IN, "source_app": "unknown", "source_canonical_service": "unknown"}
    metrics.record(labels(**outside, response_code="200"), 1.0, 0, 0)
    edges = {(e.source, e.destination): e for e in source.deltas()}
    web = edges[("web.default", "api.default")]
    assert web.reporter == pb.DESTINATION and not web.mtls
    assert (web.requests, web.denied, web.errors) == (5, 4, 0)
    assert edges[("unknown", "api.default")].requests == 1


def test_a_split_backend_is_named_by_its_canonical_service_as_the_callee_names_itself() -> None:
    """A route split sends `reviews` traffic to the `reviews-v1` Service; its workloads
    (app=reviews) report as `reviews.default`, so the caller's edge must say the same."""
    metrics = RequestMetrics()
    source = SignalsSource(metrics, "web.default")
    split = {**OUT, "destination_service_name": "reviews-v1"}
    metrics.record(labels(**split, destination_canonical_service="reviews"), 2.0, 0, 0)
    metrics.record(labels(**{**OUT, "destination_service_name": "outside"}), 2.0, 0, 0)
    edges = {e.destination: e.requests for e in source.deltas()}
    assert edges == {"reviews.default": 1, "outside.default": 1}


def test_series_past_the_cap_are_no_edge() -> None:
    """The overflow series (every label "overflow") is counted in the report's
    `overflowed`, never as an edge (it once read as inbound traffic to this proxy)."""
    metrics = RequestMetrics(1)
    source = SignalsSource(metrics, "web.default")
    metrics.record(labels(**OUT, response_code="200"), 1.0, 0, 0)
    for _ in range(5):
        metrics.record(labels(**{**OUT, "destination_service_name": "b"}), 1.0, 0, 0)
    edges = [(e.reporter, e.source, e.destination, e.requests) for e in source.deltas()]
    assert edges == [(pb.SOURCE, "web.default", "api.default", 1)]
    assert source.overflowed == 5
