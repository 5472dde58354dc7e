"""`python -m bench` runs its benchmarks one after another in one process; each pins the
process to its load core, and the next must still find every core (else it reports "not
pinned" and its figures are noise: the data-plane benchmark after the control-plane one,
as `make bench` runs them)."""

from __future__ import annotations

import os

import bench.__main__ as bench_main
import pytest
from bench.procs import set_affinity
from tests.bench import pinning_benchmark


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_each_benchmark_of_a_run_finds_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = os.sched_getaffinity(0)
    module = "tests.bench.pinning_benchmark"
    monkeypatch.setattr(bench_main, "BENCHMARKS", {"first": module, "second": module})
    pinning_benchmark.FOUND.clear()
    pinning_benchmark.REPORTS.clear()
    pinning_benchmark.LINGERING.clear()
    pinning_benchmark.THREADS_FOUND.clear()
    pinning_benchmark.RELEASE.clear()
    try:
        assert bench_main.main(["first", "second"]) == 0
    finally:
        pinning_benchmark.RELEASE.set()
        set_affinity(cpus)
    assert [cpus, cpus] == pinning_benchmark.FOUND
    # The thread the first benchmark left behind (started while pinned) has every core
    # again when the second starts: what it runs would otherwise stay on the load core.
    assert [cpus] == pinning_benchmark.THREADS_FOUND
    if {0, 1} <= cpus:  # what the data-plane benchmark's report says about pinning
        assert all("not pinned" not in report for report in pinning_benchmark.REPORTS)
