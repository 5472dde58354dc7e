"""RequestMetrics: one series per label set, the histogram's buckets, the cap on series
(later label sets count under "overflow"), and the Prometheus text they render to."""

from __future__ import annotations

from trellis.proxy.telemetry import metrics
from trellis.proxy.telemetry.metrics import LABELS, RequestMetrics


def labels(code: str, source: str = "web") -> tuple[str, ...]:
    values = dict.fromkeys(LABELS, "x")
    values.update(response_code=code, source_workload=source)
    return tuple(values[k] for k in LABELS)


def test_a_series_is_made_once_and_kept() -> None:
    m = RequestMetrics()
    first = m.series(labels("200"))
    assert m.series(labels("200")) is first
    assert m.series(labels("503")) is not first
    first.add(3.0, 10, 20)
    m.record(labels("200"), 0.2, 1, 2)
    assert (first.count, first.req_bytes, first.resp_bytes) == (2, 11, 22)
    assert first.sum_ms == 3.2
    # 0.2 ms falls in the first bucket (le 0.5), 3 ms in le 5.
    assert first.buckets[0] == 1 and first.buckets[metrics.BUCKETS_MS.index(5)] == 1
    assert m.total(response_code="200") == 2 and m.total(response_code="503") == 0


def test_buckets_hold_durations_up_to_their_bound() -> None:
    series = RequestMetrics().series(labels("200"))
    bounds = metrics.BUCKETS_MS
    for duration in (0.0, 0.5, 0.51, 1.0, 9.99, 60000.0, 60000.1, 1e9):
        series.add(duration, 0, 0)
    expected = [0] * (len(bounds) + 1)
    for duration in (0.0, 0.5, 0.51, 1.0, 9.99, 60000.0, 60000.1, 1e9):
        # le="bound" holds what is at most the bound; the last bucket is +Inf.
        expected[next((i for i, b in enumerate(bounds) if duration <= b), len(bounds))] += 1
    assert series.buckets == expected
    assert series.buckets[0] == 2 and series.buckets[1] == 2 and series.buckets[-1] == 2


def test_past_the_cap_new_label_sets_count_as_overflow() -> None:
    m = RequestMetrics()
    for i in range(metrics.MAX_SERIES):
        m.record(labels("200", f"w{i}"), 1.0, 0, 0)
    assert m.overflowed == 0
    late = m.series(labels("200", "late"))
    late.add(1.0, 0, 0)
    m.record(labels("500", "later"), 1.0, 0, 0)
    assert m.overflowed == 2
    assert m.total(source_workload="overflow") == 2
    # Known label sets keep their own series.
    m.record(labels("200", "w0"), 1.0, 0, 0)
    assert m.total(source_workload="w0") == 2
    text = m.render()
    assert "trellis_metrics_overflow_total 2\n" in text
    assert 'source_workload="overflow"' in text


def test_render_is_prometheus_text() -> None:
    m = RequestMetrics()
    m.record(labels("200"), 7.0, 5, 6)
    text = m.render()
    assert "# TYPE trellis_requests_total counter" in text
    line = next(x for x in text.splitlines() if x.startswith("trellis_requests_total{"))
    assert 'response_code="200"' in line and line.endswith(" 1")
    buckets = [x for x in text.splitlines() if "_bucket{" in x]
    assert len(buckets) == len(metrics.BUCKETS_MS) + 1  # and le="+Inf"
    assert buckets[-1].endswith(" 1") and 'le="+Inf"' in buckets[-1]
    le_5 = next(b for b in buckets if 'le="5"' in b or 'le="5.0"' in b)
    assert le_5.endswith(" 0")  # 7 ms is above 5
