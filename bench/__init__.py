"""Trellis benchmarks: `python -m bench` runs them all, `python -m bench NAME` runs one.

Speed is measured here, never by timed tests: each benchmark measures a
reference in the same run and reports ratios to it, and its figures go into
docs/benchmarks.md together with the command that produced them.

Owns: the list of benchmarks (`BENCHMARKS`: name -> module). Each module
exposes `run(quick: bool) -> Section` (see `bench.report`). Must not know what
any benchmark measures.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "controlplane": "bench.controlplane",
    "dataplane": "bench.dataplane",
    "apply": "bench.apply",
    "tracestore": "bench.tracestore",
    "signals": "bench.signals",
    "tracing": "bench.tracing",
}
