"""`make demo` runs: the sample mesh comes up, splits greeter traffic, fails nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.integration.harness import Proc


def test_demo_runs_a_canary_with_no_failed_calls(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "trellis.demo", "--seconds", "6", "--data-dir", str(tmp_path)]
    proc = Proc(argv, name="demo")
    try:
        code = proc.wait(90)
    finally:
        proc.stop()
    out = "\n".join(proc.all_lines)
    assert code == 0, out + "\n".join(proc.stderr_lines[-20:])
    assert "demo stopped; 0 failed calls" in out
    shares = [float(m) for m in re.findall(r"greeter-v2\s+([\d.]+)%", out)]
    assert shares, out
    # 90/10 canary: the canary share hovers near 10% (a loose bound: a few hundred calls a second).
    assert 2 <= sum(shares) / len(shares) <= 20, shares
