"""Regenerate trellis/telemetry_api/telemetry_pb2.py (+ .pyi, _pb2_grpc.py) from telemetry.proto.

Run from the repository root with the project's venv (grpcio-tools 1.85.0):
    python tools/gen_telemetry_proto.py
`--check` writes nothing and exits 1 when the checked-in files differ from what would be
generated (tests/telemetry_api/test_generated.py runs it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "trellis" / "telemetry_api"
PROTO = "trellis/telemetry_api/telemetry.proto"
OUTPUTS = ("telemetry_pb2.py", "telemetry_pb2.pyi", "telemetry_pb2_grpc.py")


def generate(out: Path) -> dict[str, bytes]:
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(SRC / PROTO),
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code})")
    return {name: (out / "trellis" / "telemetry_api" / name).read_bytes() for name in OUTPUTS}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
    if "--check" in argv:
        stale = [n for n, data in files.items() if (PACKAGE / n).read_bytes() != data]
        if stale:
            print(f"stale: {', '.join(stale)}; run python tools/gen_telemetry_proto.py")
            return 1
        return 0
    for name, data in files.items():
        (PACKAGE / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
