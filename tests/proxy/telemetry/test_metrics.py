"""RequestMetrics: Istio's metric names, types and labels; one series per label set; the
histograms' buckets; the cap on series (later label sets count under "overflow"); and the
Prometheus text they render to, read back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trellis.proxy.telemetry import metrics
from trellis.proxy.telemetry.metrics import LABELS, TCP_LABELS, RequestMetrics

# Istio's standard label set (istio.io/latest/docs/reference/config/metrics), as a set:
ISTIO_LABELS = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
}
# Envoy's default buckets, which Istio's histograms use.
ENVOY_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                 300000, 600000, 1800000, 3600000]  # fmt: skip


def labels(code: str, source: str = "web") -> tuple[str, ...]:
    values = dict.fromkeys(LABELS, "x")
    values.update(response_code=code, source_workload=source)
    return tuple(values[k] for k in LABELS)


def tcp_labels(source: str = "web") -> tuple[str, ...]:
    values = dict.fromkeys(TCP_LABELS, "x")
    values.update(source_workload=source, request_protocol="tcp")
    return tuple(values[k] for k in TCP_LABELS)


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_label_set_is_istios() -> None:
    assert set(LABELS) == ISTIO_LABELS and len(LABELS) == len(ISTIO_LABELS)
    assert set(TCP_LABELS) == ISTIO_LABELS - {"response_code", "grpc_response_status"}
    assert list(metrics.BUCKETS) == ENVOY_BUCKETS


def test_a_series_is_made_once_and_kept() -> None:
    m = RequestMetrics()
    first = m.series(labels("200"))
    assert m.series(labels("200")) is first
    assert m.series(labels("503")) is not first
    first.add(3.0, 10, 20)
    m.record(labels("200"), 0.2, 1, 2000)
    assert (first.count, first.req_bytes, first.resp_bytes) == (2, 11, 2020)
    assert first.duration_sum == pytest.approx(3.2)
    # 0.2 ms falls in the first bucket (le 0.5), 3 ms in le 5.
    assert first.duration[0] == 1 and first.duration[ENVOY_BUCKETS.index(5)] == 1
    # Sizes: 1 and 10 bytes in le 1 and le 10; 20 and 2000 in le 25 and le 2500.
    assert first.req_sizes[ENVOY_BUCKETS.index(1)] == 1
    assert first.req_sizes[ENVOY_BUCKETS.index(10)] == 1
    assert first.resp_sizes[ENVOY_BUCKETS.index(25)] == 1
    assert first.resp_sizes[ENVOY_BUCKETS.index(2500)] == 1
    assert m.total(response_code="200") == 2 and m.total(response_code="503") == 0


def test_buckets_hold_values_up_to_their_bound() -> None:
    series = RequestMetrics().series(labels("200"))
    values = (0.0, 0.5, 0.51, 1.0, 9.99, 60000.0, 60000.1, 3600000.0, 1e9)
    for value in values:
        series.add(value, 0, 0)
    expected = [0] * (len(ENVOY_BUCKETS) + 1)
    for value in values:
        # le="bound" holds what is at most the bound; the last bucket is +Inf.
        expected[
            next((i for i, b in enumerate(ENVOY_BUCKETS) if value <= b), len(ENVOY_BUCKETS))
        ] += 1
    assert series.duration == expected
    assert series.duration[0] == 2 and series.duration[1] == 2 and series.duration[-1] == 1


@pytest.mark.parametrize("cap", [1, 3, 50])
def test_past_the_cap_new_label_sets_count_as_overflow(cap: int) -> None:
    m = RequestMetrics(max_series=cap)
    for i in range(cap):
        m.record(labels("200", f"w{i}"), 1.0, 0, 0)
    assert m.overflowed == 0
    late = m.series(labels("200", "late"))
    late.add(1.0, 0, 0)
    m.record(labels("500", "later"), 1.0, 0, 0)
    m.tcp_series(tcp_labels("tunnel")).opened += 1  # TCP label sets share the cap
    assert m.overflowed == 2
    assert m.total(source_workload="overflow") == 2
    # Known label sets keep their own series.
    m.record(labels("200", "w0"), 1.0, 0, 0)
    assert m.total(source_workload="w0") == 2
    text = m.render()
    fams = families(text)
    assert fams["trellis_metrics_overflow"].samples[0].value == 3  # type: ignore[attr-defined]
    assert fams["trellis_metrics_series_limit"].samples[0].value == cap  # type: ignore[attr-defined]
    # The cap plus one overflow series of each kind, never more.
    assert fams["trellis_metrics_series"].samples[0].value == cap + 2  # type: ignore[attr-defined]
    assert 'source_workload="overflow"' in text


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RequestMetrics(max_series=0)


def test_render_parses_back_with_istios_names_types_and_labels() -> None:
    m = RequestMetrics()
    m.record(labels("200"), 7.0, 5, 600)
    m.record(labels("200"), 70.0, 0, 6)
    tcp = m.tcp_series(tcp_labels())
    tcp.opened, tcp.closed, tcp.sent, tcp.received = 2, 1, 300, 40
    m.count_authz("denied", 'ns/"quoted"')
    fams = families(m.render())
    kinds = {name: f.type for name, f in fams.items()}  # type: ignore[attr-defined]
    # prometheus_client names counters without their _total.
    assert kinds["trellis_requests"] == "counter"
    for name in ("request_duration_milliseconds", "request_bytes", "response_bytes"):
        assert kinds[f"trellis_{name}"] == "histogram"
    for name in ("sent_bytes", "received_bytes", "connections_opened", "connections_closed"):
        assert kinds[f"trellis_tcp_{name}"] == "counter"
    (requests,) = fams["trellis_requests"].samples  # type: ignore[attr-defined]
    assert requests.name == "trellis_requests_total" and requests.value == 2
    assert set(requests.labels) == ISTIO_LABELS and requests.labels["response_code"] == "200"
    duration = {
        float(s.labels["le"]): s.value
        for s in fams["trellis_request_duration_milliseconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
    }
    assert len(duration) == len(ENVOY_BUCKETS) + 1
    assert duration[5] == 0 and duration[10] == 1 and duration[100] == 2
    assert duration[float("inf")] == 2 and duration[3600000] == 2
    sizes = {
        s.name: s.value
        for s in fams["trellis_response_bytes"].samples  # type: ignore[attr-defined]
        if not s.name.endswith("_bucket")
    }
    assert sizes == {"trellis_response_bytes_sum": 606, "trellis_response_bytes_count": 2}
    tcp_samples = {
        s.name: s
        for name in ("sent_bytes", "received_bytes", "connections_opened", "connections_closed")
        for s in fams[f"trellis_tcp_{name}"].samples  # type: ignore[attr-defined]
    }
    assert tcp_samples["trellis_tcp_sent_bytes_total"].value == 300
    assert tcp_samples["trellis_tcp_received_bytes_total"].value == 40
    assert tcp_samples["trellis_tcp_connections_opened_total"].value == 2
    assert tcp_samples["trellis_tcp_connections_closed_total"].value == 1
    assert set(tcp_samples["trellis_tcp_sent_bytes_total"].labels) == set(TCP_LABELS)
    (denied,) = fams["trellis_authz_decisions"].samples  # type: ignore[attr-defined]
    assert denied.labels["policy"] == 'ns/"quoted"'


def test_label_values_are_escaped() -> None:
    m = RequestMetrics()
    values = dict.fromkeys(LABELS, "x")
    values["destination_service"] = 'a"b\\c\nd'
    m.record(tuple(values[k] for k in LABELS), 1.0, 0, 0)
    (sample,) = families(m.render())["trellis_requests"].samples  # type: ignore[attr-defined]
    assert sample.labels["destination_service"] == 'a"b\\c\nd'


def test_the_read_api_lists_series_with_their_labels() -> None:
    m = RequestMetrics()
    m.record(labels("200", "a"), 2.0, 0, 0)
    m.record(labels("503", "b"), 30.0, 0, 0)
    rows = {lbl[metrics.label_index("source_workload")]: s for lbl, s in m.http_series()}
    assert set(rows) == {"a", "b"}
    assert rows["b"].count == 1 and rows["b"].duration[ENVOY_BUCKETS.index(50)] == 1
    m.tcp_series(tcp_labels("t")).opened += 1
    assert [lbl[TCP_LABELS.index("source_workload")] for lbl, _ in m.tcp_series_items()] == ["t"]


def test_the_duration_buckets_answer_to_their_first_name_too() -> None:
    series = RequestMetrics().series(labels("200"))
    series.add(3.0, 0, 0)
    assert series.buckets is series.duration and len(metrics.BUCKETS_MS) == len(ENVOY_BUCKETS)
