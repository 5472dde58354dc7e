"""`make demo` runs: the sample mesh comes up under `trellis run`, splits reviews traffic,
fails nothing, and stops cleanly."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.integration.harness import Proc


def test_demo_runs_a_canary_with_no_failed_calls(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "trellis.demo", "--seconds", "8", "--data-dir", str(tmp_path)]
    proc = Proc(argv, name="demo")
    try:
        code = proc.wait(90)
    finally:
        proc.stop()
    out = "\n".join(proc.all_lines)
    assert code == 0, out + "\n".join(proc.stderr_lines[-20:])
    assert "demo stopped; 0 failed calls" in out
    seconds = [line for line in out.splitlines() if "calls/s to productpage" in line]
    assert len(seconds) >= 3, out
    v1 = [float(m) for m in re.findall(r"reviews-v1\s+([\d.]+)%", out)]
    assert v1, out
    # 90/10 canary: the stable share hovers near 90% (loose: a few dozen calls a second).
    assert 75 <= sum(v1) / len(v1) <= 99.5, v1
