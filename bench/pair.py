"""Quick throughput of the Trellis sidecar pair alone, for A/B work on the data plane.

`python -m bench.pair [--plain] [--runs N] [--seconds S] [--profile DIR]
[--src DIR ... --rounds R]` starts the HAProxy backend and the sidecar pair pinned as
`python -m bench dataplane` does, runs wrk (1 thread, 64 connections) N times and
prints each run's rps and their median. With `--src` given more than once (each a
checkout's `src`, compiled in place), the builds alternate for R rounds, a fresh pair
each time, and the medians are printed per build and round: the A/B of a change to the
request path against the build before it (issue 11: "alternated, three rounds").
With `--profile DIR`, sidecar A is sampled with py-spy during the last run (raw
stacks, `DIR/sidecar-a.txt`, for flame graphs or grep).

Runs on this VM vary by about ±7%: compare variants by alternating them, not by
one run each. Not part of `make bench`'s report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import haproxy, sidecars, wrk
from bench.dataplane import _check, _wait_listening
from bench.procs import Cores, free_port, pin_this_process

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__)
    parser.add_argument("--plain", action="store_true", help="no mesh mTLS between sidecars")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of sidecar A here")
    parser.add_argument(
        "--src",
        type=Path,
        action="append",
        help="a checkout's compiled src (repeat: the builds alternate; default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of alternation")
    args = parser.parse_args()

    cores = Cores.choose()
    pin_this_process(cores.load)
    builds: list[Path | None] = [s.resolve() for s in args.src] if args.src else [None]
    medians: dict[Path | None, list[float]] = {b: [] for b in builds}
    for round_ in range(args.rounds):
        for build in builds:
            if len(builds) > 1 or args.rounds > 1:
                print(f"round {round_ + 1}, {build or 'this checkout'}:", flush=True)
            rates = _measure(build, args, cores)
            medians[build].append(statistics.median(rates))
            print(f"median: {medians[build][-1]:,.0f} rps", flush=True)
    if len(builds) > 1 or args.rounds > 1:
        print("medians per round (shared machine: compare builds round by round):")
        for build, values in medians.items():
            row = ", ".join(f"{v:,.0f}" for v in values)
            print(f"  {build or 'this checkout'}: {row} rps", flush=True)


def _measure(build: Path | None, args: argparse.Namespace, cores: Cores) -> list[float]:
    """wrk's rps over `args.runs` runs through a fresh pair of `build` (None: this
    checkout's src as the environment gives it)."""
    load_prefix = [] if cores.load is None else ["taskset", "-c", str(cores.load)]
    saved = os.environ.get("PYTHONPATH")
    if build is not None:  # the children inherit it
        os.environ["PYTHONPATH"] = os.pathsep.join([str(build), str(REPO)])
    try:
        with tempfile.TemporaryDirectory(prefix="trellis-pair-") as tmp:
            logs = Path(tmp)
            backend_port = free_port()
            backend = haproxy.start(
                haproxy.backend_config(backend_port), logs, "backend", cores.prefix()
            )
            pair = sidecars.SidecarPair(
                logs, backend_port, load_prefix, cores.prefix(), mtls=not args.plain
            )
            try:
                _wait_listening(backend, backend_port, 30)
                pair.start()
                _check(pair.outbound_port)
                url = f"http://127.0.0.1:{pair.outbound_port}/"
                rates = []
                for i in range(args.runs):
                    spy = None
                    if args.profile is not None and i == args.runs - 1:
                        pid = pair.proxies["sidecar A"].pid
                        spy = _start_spy(args.profile, pid, args.seconds)
                    command = wrk.argv(url, 64, args.seconds, host=sidecars.HOST)
                    result = wrk.run([*load_prefix, *command], logs, f"wrk-{i}", args.seconds + 30)
                    if spy is not None:
                        spy.wait(timeout=60)
                    rates.append(result.rps)
                    print(f"run {i + 1}: {result.rps:,.0f} rps, {result.errors} errors", flush=True)
                return rates
            finally:
                pair.stop()
                backend.stop()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _start_spy(out: Path, pid: int, seconds: int) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    argv = [spy, "record", "--nonblocking", "--format", "raw", "--pid", str(pid)]
    argv += ["--duration", str(seconds), "--output", str(out / "sidecar-a.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
