"""Instructions per request of the sidecar pair, counted by callgrind: an A/B drift cannot blur.

`python -m bench.instructions [--mtls] [--requests N1 N2] [--src DIR ...] [--tracing off 1 100]`

Wall-clock figures on this VM drift by ±10% within minutes, more than most changes
to the request path cost, so "costs nothing measurable" needs a count that does not
drift: each sidecar of the pair (as `python -m bench dataplane` starts it, against a
HAProxy backend) runs under `valgrind --tool=callgrind`, which counts the
instructions it executes (all threads), and N1 then N2 sequential keep-alive GETs go
through the pair. The difference of the two totals over N2 - N1 requests is the cost
of one request, start-up and shutdown cancelled out. Same build, same inputs: the
figure repeats within about 0.5% (PYTHONHASHSEED is fixed for the children).

`--src DIR` (repeatable) runs the pair from another checkout's `src` (a build
compiled there: `PYTHONPATH=DIR python tools/compile_hot_path.py`), so two builds
compare in one command, the first one being the reference. Instructions are not
time (a cache miss costs more than an add), but for code that runs the same
machine code paths the ratio tracks CPU per request. Needs valgrind (on this
machine) and HAProxy (`make bench` installs it). Not part of `make bench`'s report.

`--tracing off 1 100` runs the pair once per MeshConfig tracing setting (off, 1%,
100% sampling; spans go to the pair's control plane, whose cost is not counted),
the first being the reference: the A/B of tracing's cost per request.

`--client-trace-context` makes the client send `traceparent`, `b3` and `x-request-id`
itself (unsampled). With `--tracing off` it is the yardstick of propagation: what
carrying the three fields through both sidecars costs when no tracing code runs.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import tempfile
from pathlib import Path

from bench import haproxy, sidecars
from bench.dataplane import _wait_listening
from bench.procs import free_port

REPO = Path(__file__).resolve().parents[1]
STOP_GRACE = 300.0  # a sidecar under callgrind shuts down slowly; killed, it writes nothing


def tracing_setting(word: str) -> dict[str, object] | None:
    """`off`, a sampling percent, or `default` (None: the mesh's default, 1%)."""
    if word == "default":
        return None
    if word == "off":
        return {"enabled": False}
    return {"sampling": float(word)}


def totals(
    src: Path, requests: int, mtls: bool, tracing: dict[str, object] | None = None
) -> dict[str, int]:
    """Instructions each sidecar executed in all, start to exit, with `requests` through."""
    env = {"PYTHONPATH": f"{src}{os.pathsep}{REPO}", "PYTHONHASHSEED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the children inherit it
    try:
        with tempfile.TemporaryDirectory(prefix="trellis-callgrind-") as tmp:
            logs = Path(tmp)
            backend_port = free_port()
            backend = haproxy.start(haproxy.backend_config(backend_port), logs, "backend", [])
            callgrind = [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={logs}/cg.%p",
            ]
            pair = sidecars.SidecarPair(
                logs, backend_port, [], callgrind, mtls=mtls, tracing=tracing
            )
            try:
                _wait_listening(backend, backend_port, 30)
                pair.start(timeout=600)
                _send(pair.outbound_port, requests)
                pids = {name: child.pid for name, child in pair.proxies.items()}
                for child in pair.proxies.values():
                    child.stop(grace=STOP_GRACE)
            finally:
                pair.stop()
                backend.stop()
            # The event loop's thread only: gRPC's own threads wake on timers (keepalive,
            # polling), so their share grows with the run's length, not with requests.
            return {name: _total(logs / f"cg.{pid}-01") for name, pid in pids.items()}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# What a traced caller sends (unsampled): `--client-trace-context`.
TRACE_CONTEXT = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "b3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    "x-request-id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
}
_client_headers: dict[str, str] = {}


def _send(port: int, requests: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(requests):
            conn.request("GET", "/", headers={"Host": sidecars.HOST, **_client_headers})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the pair answered {response.status}")
    finally:
        conn.close()


def _total(path: Path) -> int:
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{path}: no instruction total (did the sidecar exit cleanly?)")
    return int(found.group(1))


def per_request(
    src: Path, n1: int, n2: int, mtls: bool, tracing: dict[str, object] | None = None
) -> dict[str, float]:
    first, second = totals(src, n1, mtls, tracing), totals(src, n2, mtls, tracing)
    return {name: (second[name] - first[name]) / (n2 - n1) for name in first}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--mtls", action="store_true", help="mesh mTLS between the sidecars")
    parser.add_argument("--requests", type=int, nargs=2, default=(500, 3000), metavar="N")
    parser.add_argument(
        "--src", type=Path, action="append", help="a checkout's src (default: this one)"
    )
    parser.add_argument(
        "--tracing",
        nargs="+",
        default=["default"],
        metavar="SETTING",
        help="off, a sampling percent, or default (the mesh's 1%%); one run each",
    )
    parser.add_argument(
        "--client-trace-context",
        action="store_true",
        help="the client sends traceparent, b3 and x-request-id (unsampled) itself",
    )
    args = parser.parse_args()
    if args.client_trace_context:
        _client_headers.update(TRACE_CONTEXT)
    n1, n2 = args.requests
    builds = args.src or [REPO / "src"]
    reference: dict[str, float] | None = None
    for src in builds:
        for setting in args.tracing:
            counts = per_request(src.resolve(), n1, n2, args.mtls, tracing_setting(setting))
            for name, count in counts.items():
                ratio = f"  ({count / reference[name]:.4f}x the first)" if reference else ""
                print(
                    f"{src} tracing {setting}  {name}: {count:,.0f} instructions/request{ratio}",
                    flush=True,
                )
            reference = reference or counts


if __name__ == "__main__":
    main()
