"""`trellis control` with a setting its CLI does not expose, for tests: the gRPC servers'
keepalive policy, scaled down (`--min-ping-interval-ms`), so that a test sees in seconds
what takes minutes with the real numbers.

Takes `trellis control`'s options that `control_plane()` passes and runs the same
`trellis.control.server.run`, so the banner and the shutdown are the real ones:
`control_plane(tmp, command=(sys.executable, ENTRY, "--min-ping-interval-ms", "1500"))`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trellis.control.config import ControlConfig, HostPort
from trellis.control.server import run
from trellis.keepalive import ServerPingPolicy

ENTRY = str(Path(__file__))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--xds-listen", required=True)
    parser.add_argument("--secure-listen", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--min-ping-interval-ms", type=int, required=True)
    args = parser.parse_args()
    run(
        ControlConfig(
            data_dir=args.data_dir,
            api=HostPort.parse(args.listen),
            xds=HostPort.parse(args.xds_listen),
            secure=HostPort.parse(args.secure_listen),
            log_level=args.log_level,
            keepalive=ServerPingPolicy(min_ping_interval_ms=args.min_ping_interval_ms),
        )
    )


if __name__ == "__main__":
    main()
