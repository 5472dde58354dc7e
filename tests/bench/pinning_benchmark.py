"""A stand-in benchmark for tests/bench/test_bench_main.py: records the cores it finds, then
pins this process to one of them, as the real benchmarks pin themselves to the load core."""

from __future__ import annotations

import os

from bench.procs import pin_this_process
from bench.report import Section

FOUND: list[set[int]] = []


def run(quick: bool) -> Section:
    FOUND.append(os.sched_getaffinity(0))
    pin_this_process(min(os.sched_getaffinity(0)))
    return Section("pinning", "")
