"""Processes for benchmarks: free ports, CPU pinning, children stopped by PID, /proc readings.

Children write their output to files (no pipes to drain) and run in their own
session; `Child.stop` sends SIGTERM, then SIGKILL after a grace period, to
that PID only. Linux only (/proc, sched_setaffinity).

Must not know what the children are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Cores:
    """Where the load side (this process) and the measured side run; None: not pinned."""

    load: int | None
    measured: int | None

    @classmethod
    def choose(cls) -> Cores:
        """Core 0 for the load, core 1 for the measured process, when both are available."""
        available = os.sched_getaffinity(0)
        if {0, 1} <= available:
            return cls(load=0, measured=1)
        return cls(load=None, measured=None)

    def describe(self) -> str:
        if self.load is None:
            return "not pinned (fewer than two cores available)"
        return f"load side on core {self.load}, measured process on core {self.measured}"

    def prefix(self) -> list[str]:
        """The argv prefix that pins a child to the measured core."""
        return [] if self.measured is None else ["taskset", "-c", str(self.measured)]


def pin_this_process(core: int | None) -> None:
    """Pin every thread of this process (and what it starts later) to `core`."""
    if core is not None:
        set_affinity({core})


def set_affinity(cpus: set[int]) -> None:
    """Every thread of this process (and what it starts later) on `cpus`: how a benchmark
    that pinned the process gives the next one of the same run all the cores back."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


class Child:
    """A child process with stdout/stderr in files under `logs`, stopped by PID."""

    def __init__(
        self, argv: list[str], logs: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far (clock-tick resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    times = os.times()
    return times.user + times.system
