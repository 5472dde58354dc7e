"""Traffic helpers for the sidecar integration tests: meshed versions of a service, request
tallies, background load, and the processes' PIDs and memory.

Builds on `dataplane.py` (trellis run, client sidecars) and `harness.py` (the control
plane); everything here is plain client code: httpx through a sidecar, /proc reads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.integration.dataplane import Member, run_service
from tests.integration.harness import Mesh

SERVICE_PORT = 9080
FLAGS = "x-trellis-flags"


def service_yaml(name: str, selector: dict[str, str], port: int = SERVICE_PORT) -> str:
    """A Service whose port reaches each member's port named `http` (what trellis run
    registers)."""
    labels = ", ".join(f"{k}: {v}" for k, v in selector.items())
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{{labels}}}
  ports: [{{name: http, port: {port}, targetPort: http}}]
---
"""


def start_members(
    mesh: Mesh, service: str, labels: Iterable[dict[str, str]], ttl: float = 10.0
) -> list[Member]:
    """`trellis run --service SERVICE` once per label set, started side by side."""
    with ThreadPoolExecutor() as pool:
        futures = [
            pool.submit(run_service, mesh, service, labels=extra, ttl=ttl) for extra in labels
        ]
        return [f.result() for f in futures]


def versioned(mesh: Mesh, service: str, versions: Iterable[str]) -> dict[str, Member]:
    """Service SERVICE (app=SERVICE) and SERVICE-vN (app=SERVICE, version=vN), one member
    per version, all on SERVICE_PORT."""
    versions = list(versions)
    text = service_yaml(service, {"app": service})
    for v in versions:
        text += service_yaml(f"{service}-{v}", {"app": service, "version": v})
    mesh.cp.apply(text)
    members = start_members(mesh, service, ({"version": v} for v in versions))
    return dict(zip(versions, members, strict=True))


def names(client: httpx.Client, url: str, n: int, **kw: object) -> Counter[str]:
    """Which workload answered each of `n` calls (an error status counts as `HTTP <code>`)."""
    out: Counter[str] = Counter()
    for _ in range(n):
        r = client.get(url, **kw)  # type: ignore[arg-type]
        out[r.json()["name"] if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
    return out


def statuses(client: httpx.Client, url: str, n: int) -> Counter[int]:
    out: Counter[int] = Counter()
    for _ in range(n):
        out[client.get(url).status_code] += 1
    return out


@dataclass
class Outcome:
    t: float  # time.monotonic() when the call ended
    status: int  # 0: the client got no answer (see error)
    name: str = ""
    flags: str = ""
    error: str = ""
    started: float = 0.0  # time.monotonic() when the call was sent


@dataclass
class Load:
    """Calls `url` through `client` back to back in `workers` threads until stopped; every
    outcome is kept (httpx clients are thread-safe)."""

    client: httpx.Client
    url: str
    workers: int = 1
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                r = self.client.get(self.url)
            except httpx.HTTPError as e:
                self.outcomes.append(Outcome(time.monotonic(), 0, error=repr(e), started=started))
                continue
            name = r.json().get("name", "") if r.status_code == 200 else ""
            flags = r.headers.get(FLAGS, "")
            self.outcomes.append(Outcome(time.monotonic(), r.status_code, name, flags, "", started))

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in list(self.outcomes) if predicate(o))

    def failures(self) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.status != 200]


# -- processes ------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (the app under `trellis run` runs in its own session, but
    it is still its child)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def app_pid(member: Member) -> int:
    """The PID of the app that `trellis run` started (not the sidecar's identity key
    worker, a short-lived child of its own while a certificate is made)."""
    kids = []
    for pid in children(member.proc.pid):
        try:
            if b"trellis.proxy.identity.keygen" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                kids.append(pid)
        except OSError:
            continue
    assert len(kids) == 1, f"expected one app under trellis run {member.proc.pid}: {kids}"
    return kids[0]


def rss_bytes(pid: int) -> int:
    """VmRSS of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssWatch:
    """Samples the RSS of some processes in a thread; `peak` per PID."""

    def __init__(self, pids: Iterable[int], interval: float = 0.02) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak = {pid: rss_bytes(pid) for pid in self.pids}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))
            self.samples += 1


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
