"""The golden-signal arithmetic, without sockets or clocks: buckets, the source-over-destination
rule, quantiles, re-binning, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.control.signals.aggregate import (
    BOUNDS_MS,
    DESTINATION,
    SOURCE,
    CellKey,
    Delta,
    Rebin,
    SignalStore,
    quantile,
)

N = len(BOUNDS_MS) + 1
T0 = 1_796_590_800.0  # a multiple of 10


def hist(**at: int) -> list[int]:
    """Buckets with counts at the bucket of each bound named `b<bound>`."""
    out = [0] * N
    for name, n in at.items():
        out[BOUNDS_MS.index(float(name[1:]) if "." in name else int(name[1:]))] += n
    return out


def delta(
    reporter: int, src: str, dst: str, n: int, errors: int = 0, denied: int = 0, **at: int
) -> Delta:
    return Delta(
        CellKey(reporter, src, dst, True), n, errors, denied, hist(**at) if at else hist(b5=n)
    )


def test_source_reports_win_over_destination_reports() -> None:
    store = SignalStore()
    store.ingest(
        [
            delta(SOURCE, "web.default", "api.default", 100, errors=10),
            delta(DESTINATION, "web.default", "api.default", 95, errors=5, denied=3),
            delta(DESTINATION, "unknown", "api.default", 20),
        ],
        T0 + 5,
        5,
    )
    body = store.signals(60, T0 + 9)
    edges = {(e["source"], e["destination"]): e for e in body["edges"]}
    assert edges[("web.default", "api.default")]["requests"] == 100
    assert edges[("web.default", "api.default")]["success_rate"] == 0.9
    assert edges[("unknown", "api.default")]["requests"] == 20
    services = {s["service"]: s for s in body["services"]}
    assert services["api.default"]["requests"] == 120
    assert services["api.default"]["errors"] == 10
    assert services["api.default"]["denied"] == 3  # denials come from the destination
    assert services["web.default"]["requests"] == 0
    assert services["web.default"]["success_rate"] is None
    assert "unknown" not in services


def test_rps_counts_the_time_the_reports_cover() -> None:
    store = SignalStore()
    # 2 s reports of 20 requests each, for 10 s: 10 rps.
    for i in range(5):
        store.ingest([delta(SOURCE, "a.ns", "b.ns", 20)], T0 + 2 * (i + 1), 2)
    e = store.signals(60, T0 + 10)["edges"][0]
    assert e["rps"] == pytest.approx(10, rel=0.01)
    # 50 s later, the same requests averaged over the whole window.
    e = store.signals(60, T0 + 60)["edges"][0]
    assert e["rps"] == pytest.approx(100 / 60, rel=0.01)


def test_window_and_expiry() -> None:
    store = SignalStore(keep_buckets=3)
    store.ingest([delta(SOURCE, "a.ns", "b.ns", 5)], T0, 2)
    store.ingest([delta(SOURCE, "a.ns", "b.ns", 7)], T0 + 25, 2)
    assert store.signals(10, T0 + 29)["edges"][0]["requests"] == 7
    assert store.signals(60, T0 + 29)["edges"][0]["requests"] == 12
    store.ingest([delta(SOURCE, "a.ns", "b.ns", 1)], T0 + 45, 2)  # the first bucket expires
    assert store.signals(900, T0 + 45)["edges"][0]["requests"] == 8
    assert store.statistics()["buckets"] <= 3


def test_keys_per_bucket_are_bounded_and_the_overflow_counted() -> None:
    store = SignalStore(max_keys_per_bucket=10)
    store.ingest([delta(SOURCE, f"s{i}.ns", "b.ns", 1) for i in range(25)], T0, 2)
    assert store.statistics()["cells"] == 10
    assert store.overflow == 15


def test_history_has_a_point_per_bucket() -> None:
    store = SignalStore()
    store.ingest([delta(SOURCE, "a.ns", "b.ns", 100, errors=1)], T0 + 15, 10)
    store.ingest([delta(SOURCE, "a.ns", "b.ns", 50)], T0 + 35, 10)
    h = store.history(1, T0 + 40, service="b.ns")
    assert h["step_seconds"] == 10
    by_t = {p["t"]: p for p in h["points"]}
    assert by_t[int(T0 + 10)]["rps"] == 10 and by_t[int(T0 + 10)]["success_rate"] == 0.99
    assert by_t[int(T0 + 20)]["rps"] == 0 and by_t[int(T0 + 20)]["success_rate"] is None
    assert by_t[int(T0 + 30)]["rps"] == 5
    edge = store.history(1, T0 + 40, source="a.ns", destination="b.ns")
    assert [p["rps"] for p in edge["points"]] == [p["rps"] for p in h["points"]]
    assert all(p["rps"] == 0 for p in store.history(1, T0 + 40, service="x.ns")["points"])


def test_quantiles_interpolate_like_prometheus() -> None:
    # 100 requests in (1, 5] ms: p50 at 3 ms, p99 at 4.96 ms.
    b = hist(b5=100)
    assert quantile(0.5, b) == pytest.approx(3.0)
    assert quantile(0.99, b) == pytest.approx(4.96)
    assert quantile(0.5, [0] * N) is None
    past = [0] * N
    past[-1] = 3
    assert quantile(0.99, past) == BOUNDS_MS[-1]


@given(st.lists(st.integers(0, 1000), min_size=N, max_size=N), st.floats(0.01, 0.99))
def test_p99_is_never_below_p50(counts: list[int], q: float) -> None:
    low, high = quantile(0.5, counts), quantile(0.99, counts)
    if sum(counts) == 0:
        assert low is None and high is None
    else:
        assert low is not None and high is not None and high >= low


def test_rebin_maps_other_bounds_onto_ours() -> None:
    same = Rebin(BOUNDS_MS)
    counts = list(range(N))
    assert same.apply(counts) == counts
    coarse = Rebin([3.0, 100.0])  # <=3 ms -> our 5 ms bucket; <=100 -> 100; past -> past
    out = coarse.apply([4, 5, 6])
    assert out[BOUNDS_MS.index(5)] == 4
    assert out[BOUNDS_MS.index(100)] == 5
    assert out[-1] == 6
    # More counts than the proxy's bounds said: the extra ones land past the last bound.
    assert sum(coarse.apply([1, 1, 1, 1, 1])) == 5
