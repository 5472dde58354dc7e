"""The checked-in telemetry_pb2 modules are what grpcio-tools makes of telemetry.proto now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_telemetry_proto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_notices_a_stale_module(tmp_path: Path) -> None:
    """The check can fail: a generated file that differs is named."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_telemetry_proto as gen
    finally:
        sys.path.remove(str(ROOT / "tools"))
    files = gen.generate(tmp_path)
    assert set(files) == set(gen.OUTPUTS)
    assert b"trellis.telemetry.v1" in files["telemetry_pb2.py"]
