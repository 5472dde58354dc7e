"""The data-plane benchmark's arithmetic and report (no processes)."""

from __future__ import annotations

import pytest
from bench.dataplane import (
    REFERENCE,
    PathResult,
    ProxyUsage,
    added,
    cpu_per_1k,
    generator_fell_behind,
    limited_by,
    ratio,
    render,
    summarize,
)
from bench.loadgen import OpenLoopResult
from bench.sidecars import mesh_documents


def _path(key: str, label: str, p50_us: float, p99_us: float, rps: float) -> PathResult:
    return PathResult(
        key,
        label,
        p50=p50_us / 1e6,
        p90=(p50_us + p99_us) / 2e6,
        p99=p99_us / 1e6,
        rps=rps,
        wrk_cpu_share=0.2,
        send_rate=1000.0,
        send_lag_p99=20e-6,
        measured_cpu_share=1.0,
        proxies=[ProxyUsage("P1", 0.040, 16), ProxyUsage("P2", 0.020, 15)]
        if key != "direct"
        else [],
    )


def _run(offset_us: float, errors: int = 0) -> OpenLoopResult:
    run = OpenLoopResult(rate=1000, duration=1)
    run.latencies = [(i + offset_us) / 1e6 for i in range(1, 101)]  # 1..100 µs + offset
    run.send_lag = [0.0] * 99 + [offset_us / 1e6]
    run.errors = errors
    return run


def test_summarize_one_segment_takes_its_percentiles() -> None:
    result = PathResult("direct", "(a) direct")
    summarize(result, [_run(0, errors=2)])
    assert result.p50 == pytest.approx(50.5e-6)
    assert result.p90 == pytest.approx(90.1e-6)
    assert result.p99 == pytest.approx(99.01e-6)
    assert result.ok == 100 and result.errors == 2


def test_summarize_takes_the_median_segment_and_adds_counts() -> None:
    result = PathResult("direct", "(a) direct")
    summarize(result, [_run(0, errors=1), _run(5000), _run(10, errors=2)])  # one bad segment
    assert result.p50 == pytest.approx(60.5e-6)
    assert result.p99 == pytest.approx(109.01e-6)
    assert result.ok == 300 and result.errors == 3
    assert result.send_lag_max == pytest.approx(0.005)


def test_summarize_without_any_success_fails() -> None:
    with pytest.raises(RuntimeError, match="no successful request"):
        summarize(PathResult("x", "x"), [_run(0), OpenLoopResult(rate=1000, duration=1)])


def test_added_ratio_and_cpu() -> None:
    direct = _path("direct", "a", 80, 110, 180_000)
    pair = _path(REFERENCE, "b", 120, 270, 36_000)
    assert added(pair, direct) == pytest.approx((40e-6, 160e-6))
    assert ratio(60e-6, 40e-6) == pytest.approx(1.5)
    assert ratio(1.0, 0.0) is None
    assert ratio(1.0, -1e-6) is None
    assert cpu_per_1k(0.25, 5000) == pytest.approx(0.05)
    assert cpu_per_1k(0.25, 0) == 0.0


def test_limited_by() -> None:
    assert limited_by(0.97, 0.5).startswith("load side")
    assert limited_by(0.97, 1.0).startswith("load side")
    assert limited_by(0.2, 0.99) == "measured core"
    assert limited_by(0.2, 0.5) == "neither core saturated"


def test_render_with_trellis_skipped() -> None:
    results = [
        _path("direct", "(a) direct", 80, 110, 180_000),
        _path(REFERENCE, "(b) HAProxy pair", 120, 270, 36_000),
        PathResult("trellis", "(c) Trellis sidecar pair", skipped="not built yet"),
    ]
    text = render(results, ["env line"])
    assert text.startswith("env line\n**(c) Trellis sidecar pair: skipped: not built yet**")
    assert "| (b) HAProxy pair | 36,000 | 120 | 195 | 270 | +40 | +160 | 0 / 0 |" in text
    assert "| (c) Trellis sidecar pair | skipped |" in text
    assert "| (path not measured) | n/a | |" in text
    assert "| (b) HAProxy pair | P1 | 0.040 | 16 |" in text
    assert "| (a) direct | 20% | 100% | measured core |" in text


def test_render_ratios_against_the_haproxy_pair() -> None:
    results = [
        _path("direct", "(a) direct", 80, 110, 180_000),
        _path(REFERENCE, "(b) HAProxy pair", 120, 270, 36_000),
        _path("trellis", "(c) Trellis sidecar pair", 140, 350, 27_000),
    ]
    text = render(results, [])
    assert "| added p50 | 1.50x | ≤ 1.5x |" in text
    assert "| added p99 | 1.50x | ≤ 1.5x |" in text
    assert "| max rps | 0.75x | ≥ 0.7x |" in text
    assert "| largest proxy RSS | 16 MB | ≤ 60 MB |" in text


def test_each_trellis_pair_is_held_against_the_haproxy_pair_of_its_kind() -> None:
    results = [
        _path("direct", "(a) direct", 80, 110, 180_000),
        _path("haproxy", "(b) HAProxy pair", 120, 270, 36_000),
        _path(REFERENCE, "(b') HAProxy pair, mTLS", 140, 310, 26_000),
        _path("trellis-plain", "(c) Trellis sidecar pair", 200, 350, 27_000),
        _path("trellis", "(c') Trellis sidecar pair, mTLS", 150, 330, 13_000),
    ]
    text = render(results, [])
    plain = text.split("| (c) Trellis sidecar pair / (b) HAProxy pair | value | target |")[1]
    mtls = plain.split("| (c') Trellis sidecar pair, mTLS / (b') HAProxy pair, mTLS |")[1]
    plain = plain.split("| (c') Trellis sidecar pair, mTLS /")[0]
    # (c) against (b): +120 over +40 µs, 270 over 160 µs added p99, 27k over 36k rps.
    assert "| added p50 | 3.00x | ≤ 1.5x |" in plain
    assert "| max rps | 0.75x | ≥ 0.7x |" in plain
    # (c') against (b'): +70 over +60 µs, 13k over 26k rps.
    assert "| added p50 | 1.17x | ≤ 1.5x |" in mtls
    assert "| max rps | 0.50x | ≥ 0.7x |" in mtls


def test_a_skipped_trellis_pair_says_so_in_its_comparison() -> None:
    results = [
        _path("direct", "(a) direct", 80, 110, 180_000),
        _path("haproxy", "(b) HAProxy pair", 120, 270, 36_000),
        _path(REFERENCE, "(b') HAProxy pair, mTLS", 140, 310, 26_000),
        PathResult("trellis-plain", "(c) Trellis sidecar pair", skipped="failed: boom"),
        _path("trellis", "(c') Trellis sidecar pair, mTLS", 150, 330, 13_000),
    ]
    text = render(results, [])
    plain = text.split("| (c) Trellis sidecar pair / (b) HAProxy pair | value | target |")[1]
    assert plain.split("\n")[2] == "| (path not measured) | n/a | |"
    assert "| max rps | 0.50x | ≥ 0.7x |" in text


def test_the_yardsticks_are_held_against_the_same_references() -> None:
    results = [
        _path("direct", "(a) direct", 80, 110, 180_000),
        _path("haproxy", "(b) HAProxy pair", 120, 270, 36_000),
        _path(REFERENCE, "(b') HAProxy pair, mTLS", 140, 310, 26_000),
        _path("relay", "(r) minimal HTTP relay pair", 140, 330, 36_000),
        _path("relay-tls", "(r') minimal HTTP relay pair, TLS", 200, 410, 13_000),
        PathResult("relay-raw", "(r0) byte relay pair", skipped="failed: boom"),
    ]
    text = render(results, [])
    relay = text.split("| yardstick: (r) minimal HTTP relay pair / (b) HAProxy pair |")[1]
    relay = relay.split("| yardstick: (r') minimal")[0]
    tls = text.split("| yardstick: (r') minimal HTTP relay pair, TLS / (b') HAProxy pair, mTLS")[1]
    # (r) against (b): +60 over +40 µs, 36k over 36k rps; (r') against (b'): +120 over +60.
    assert "| added p50 | 1.50x | ≤ 1.5x |" in relay
    assert "| max rps | 1.00x | ≥ 0.7x |" in relay
    assert "| added p50 | 2.00x | ≤ 1.5x |" in tls
    assert "| max rps | 0.50x | ≥ 0.7x |" in tls
    raw = text.split("| yardstick: (r0) byte relay pair / (b) HAProxy pair |")[1]
    assert raw.split("\n")[2] == "| (path not measured) | n/a | |"
    assert "**(r0) byte relay pair: skipped: failed: boom**" in text


def test_mesh_documents_route_the_service_to_sidecar_b() -> None:
    service, workload = mesh_documents(backend_port=41000, inbound_port=41001)
    assert service["kind"] == "Service" and service["metadata"]["name"] == "backend"
    assert service["spec"]["selector"] == {"app": "backend"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "http"}
    ]
    assert workload["metadata"] == {"name": "backend-0", "labels": {"app": "backend"}}
    assert workload["spec"] == {
        "address": "127.0.0.1",
        "ports": [{"name": "http", "port": 41000, "protocol": "http"}],
        "inbound": {"port": 41001},
        "mtls": True,
    }


def test_a_late_generator_is_flagged() -> None:
    direct = _path("direct", "(a) direct", 80, 110, 180_000)
    assert not generator_fell_behind(direct)
    direct.send_lag_p99 = 2e-3
    assert generator_fell_behind(direct)
    text = render([direct, _path(REFERENCE, "(b) HAProxy pair", 120, 270, 36_000)], [])
    assert "**(a) direct: the open loop fell behind (sent 1000 req/s, send lag p99 2000 µs)" in (
        text
    )
    direct.send_lag_p99 = 20e-6
    direct.send_rate = 950.0
    assert generator_fell_behind(direct)


def test_a_negative_difference_shows_its_sign() -> None:
    results = [
        _path("direct", "(a) direct", 80, 3000, 180_000),
        _path(REFERENCE, "(b) HAProxy pair", 120, 270, 36_000),
    ]
    assert "| +40 | -2730 |" in render(results, [])
