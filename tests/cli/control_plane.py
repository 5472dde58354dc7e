"""A real `trellis control` subprocess on free ports, and running the real `trellis` CLI."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TRELLIS = str(Path(sys.executable).with_name("trellis"))
TOKEN = "cli-test-token"


@dataclass
class ControlPlane:
    api_url: str
    xds_address: str
    env: dict[str, str]  # for CLI runs: config file from first start, no TRELLIS_SERVER
    banner: list[str]
    workdir: Path
    exit_code: int | None = None  # set once the control plane has stopped
    secure_address: str = ""  # the secure port (TLS: CA service + ADS), the banner's last line
    data_dir: Path | None = None
    pid: int = 0

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `trellis ARGS` to completion (cwd = workdir) and return its result."""
        return subprocess.run(
            [TRELLIS, *args],
            env=env or self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )


def _read_banner(proc: subprocess.Popen[bytes], want: int, deadline: float) -> list[str]:
    """The first `want` stdout lines, or AssertionError at the deadline (unbuffered reads)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    end = time.monotonic() + deadline
    try:
        while data.count(b"\n") < want:
            left = end - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise AssertionError(f"trellis control did not start: stdout={data!r}")
            if sel.select(timeout=left):
                data += os.read(fd, 4096)
    finally:
        sel.close()
    return data.decode().splitlines()[:want]


SECURE = "secure listening on "


@contextmanager
def control_plane(
    tmp: Path,
    banner_lines: int = 4,
    extra_args: tuple[str, ...] = (),
    command: tuple[str, ...] = (TRELLIS, "control"),
) -> Iterator[ControlPlane]:
    """Start `trellis control` in `tmp`; stop it with SIGTERM (by pid) on exit.

    `banner_lines` counts the lines before the secure port's (4 on a first start: API,
    xDS, admin token, CLI config; 2 on a restart); the secure line after them is read too.
    `command` replaces `trellis control` (it gets the same options), for settings the CLI
    does not expose (tests/cli/control_entry.py).
    """
    env = {
        **os.environ,
        "HOME": str(tmp / "home"),
        "TRELLIS_CONFIG": str(tmp / "cli-config.json"),
        "TRELLIS_TOKEN": TOKEN,
    }
    env.pop("TRELLIS_SERVER", None)
    stderr = (tmp / "control.stderr").open("w")
    proc = subprocess.Popen(
        [
            *command,
            "--data-dir",
            str(tmp / "data"),
            "--listen",
            "127.0.0.1:0",
            "--xds-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
            "--log-level",
            "warning",
            *extra_args,
        ],
        env=env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    plane: ControlPlane | None = None
    try:
        banner = _read_banner(proc, banner_lines + 1, deadline=30)
        api_url = banner[0].removeprefix("API listening on ")
        xds = banner[1].removeprefix("xDS listening on ")
        assert banner[-1].startswith(SECURE), banner
        cli_env = {
            k: v for k, v in env.items() if k != "TRELLIS_TOKEN"
        }  # token from the config file
        plane = ControlPlane(api_url, xds, cli_env, banner, tmp)
        plane.secure_address = banner[-1].removeprefix(SECURE)
        plane.data_dir = tmp / "data"
        plane.pid = proc.pid
        yield plane
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if plane is not None:
            plane.exit_code = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()
        stderr.close()
