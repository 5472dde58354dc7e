"""The checked-in telemetry_pb2 modules are what grpcio-tools makes of telemetry.proto now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_check_notices_a_stale_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check can fail: a checked-in module that differs is named."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_telemetry_proto as gen
    finally:
        sys.path.remove(str(ROOT / "tools"))
    copy = tmp_path / "telemetry_api"
    copy.mkdir()
    for name in gen.OUTPUTS:
        (copy / name).write_bytes((gen.PACKAGE / name).read_bytes())
    monkeypatch.setattr(gen, "PACKAGE", copy)
    assert gen.main(["--check"]) == 0
    (copy / "telemetry_pb2.py").write_bytes(b"# edited by hand\n")
    assert gen.main(["--check"]) == 1
    assert "stale: telemetry_pb2.py" in capsys.readouterr().out
