"""A stand-in benchmark for tests/bench/test_bench_main.py: records the cores it finds and
what a real benchmark's report would say about pinning, then pins this process to one
core, as the real benchmarks pin themselves to the load core. Its first run also leaves a
thread behind, started while pinned, as the control-plane benchmark leaves gRPC's."""

from __future__ import annotations

import os
import threading

from bench.procs import Cores, pin_this_process
from bench.report import Section

FOUND: list[set[int]] = []
REPORTS: list[str] = []
THREADS_FOUND: list[set[int]] = []  # the lingering thread's cores, when a run starts
LINGERING: list[threading.Thread] = []
RELEASE = threading.Event()


def run(quick: bool) -> Section:
    FOUND.append(os.sched_getaffinity(0))
    REPORTS.append(Cores.choose().describe())
    for thread in LINGERING:
        assert thread.native_id is not None
        THREADS_FOUND.append(os.sched_getaffinity(thread.native_id))
    pin_this_process(min(os.sched_getaffinity(0)))
    if not LINGERING:
        thread = threading.Thread(target=RELEASE.wait, args=(30,), daemon=True)
        thread.start()
        LINGERING.append(thread)
    return Section("pinning", "")
