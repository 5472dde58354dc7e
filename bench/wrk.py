"""Maximum throughput: `wrk` (Debian's, C, epoll) in a closed loop, and what it reports.

`argv` builds the command (one thread, N keep-alive connections, an optional
Host header), `parse` reads its summary, and `run` starts it as a child
process and also measures its CPU time, so the caller can tell whether the
load side saturated before the measured side did.

Must not know what it is pointed at.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Child

_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b", re.M)
_RPS = re.compile(r"^Requests/sec:\s*([\d.]+)", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    socket_errors: int  # connect + read + write + timeout
    non_2xx: int
    cpu_seconds: float = 0.0  # wrk's own user + system time (0 when not measured)

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def cpu_share(self) -> float:
        """wrk's CPU time over the run's length: about 1.0 when its one thread was saturated."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


def argv(
    url: str, connections: int, seconds: int, host: str | None = None, threads: int = 1
) -> list[str]:
    command = [
        shutil.which("wrk") or "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        "--timeout=5s",
    ]
    if host is not None:
        command += ["--header", f"Host: {host}"]
    return [*command, url]


def parse(output: str) -> WrkResult:
    requests, rps = _REQUESTS.search(output), _RPS.search(output)
    if requests is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    socket = _SOCKET.search(output)
    non_2xx = _NON2XX.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNIT[requests.group(3)],
        rps=float(rps.group(1)),
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run(command: list[str], logs: Path, name: str, timeout: float) -> WrkResult:
    """Run wrk to completion (stopped by PID on timeout or error) and parse its summary.

    Its CPU time comes from the rusage of reaped children, so nothing else may
    be reaped by this process meanwhile.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = Child(command, logs, name)
    try:
        deadline = time.monotonic() + timeout
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.alive():
            raise RuntimeError(f"wrk did not finish within {timeout:.0f} s")
    finally:
        child.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.popen.returncode != 0:
        raise RuntimeError(f"wrk failed ({child.popen.returncode}):\n{child.stderr_tail()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = parse(child.output())
    return WrkResult(
        result.requests, result.seconds, result.rps, result.socket_errors, result.non_2xx, cpu
    )


def version() -> str:
    """wrk's version line, e.g. `wrk debian/4.1.0-3+b2 [epoll]`."""
    out = subprocess.run(
        [shutil.which("wrk") or "wrk", "--version"], capture_output=True, text=True, timeout=10
    )
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"
