"""`RouteTable.select` alone: instructions (or time) per call, to show a change costs it nothing.

`python -m bench.route_select [--calls N] [--callgrind]`

Selects routes from a table shaped like what the control plane sends a sidecar for a
service with an HTTPRoute (header, query and method matches before a catch-all),
with the requests a sidecar sees most: one that falls through to the catch-all and
one caught by a header. Without `--callgrind` it prints the best of five timings
(ns per call: noisy on a shared VM). With `--callgrind` it runs itself twice under
`valgrind --tool=callgrind` (0 and N calls) and prints the instructions per call,
which repeat to the instruction: the way to compare two builds (`PYTHONPATH=DIR` for
each). Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envoy.config.route.v3 import route_pb2
from google.protobuf.json_format import ParseDict

from trellis.routing import RouteTable


def _route(name: str, match: dict[str, object], cluster: str) -> dict[str, object]:
    return {"name": name, "match": match, "route": {"cluster": cluster, "timeout": "0s"}}


def table() -> RouteTable:
    v1 = "outbound|9080||web-v1.default.svc.mesh"
    v2 = "outbound|9080||web-v2.default.svc.mesh"
    header = {"name": "x-version", "string_match": {"exact": "v2"}}
    query = {"name": "version", "string_match": {"exact": "2"}}
    method = {"name": ":method", "string_match": {"exact": "POST"}}
    routes = [
        _route("by-header", {"prefix": "/", "headers": [header]}, v2),
        _route("by-query", {"prefix": "/", "query_parameters": [query]}, v2),
        _route("by-method", {"path": "/orders", "headers": [method]}, v2),
        _route("default", {"prefix": "/"}, v1),
    ]
    domains = ["web", "web:9080", "web.default", "web.default:9080"]
    doc = {"name": "web.default.svc.mesh:9080", "virtual_hosts": [
        {"name": "web", "domains": domains, "routes": routes}
    ]}  # fmt: skip
    return RouteTable.compile(ParseDict(doc, route_pb2.RouteConfiguration()))


def calls(n: int) -> None:
    t = table()
    plain = {"accept": "*/*", "user-agent": "bench"}
    tagged = {**plain, "x-version": "v2"}
    select = t.select
    for _ in range(n):
        select("web:9080", "GET", "/items/42", plain)
        select("web:9080", "GET", "/items/42?a=1", tagged)


def _instructions(n: int, tmp: Path) -> int:
    out = tmp / f"cg.{n}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
            "-m", "bench.route_select", "--run", str(n)]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(argv, check=True, env=env, capture_output=True)
    found = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
    assert found is not None, f"no summary in {out}"
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.route_select", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="pairs of selects")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        calls(args.run)
        return 0
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="trellis-select-") as tmp:
            base = _instructions(0, Path(tmp))
            total = _instructions(args.calls, Path(tmp))
        print(f"{(total - base) / (2 * args.calls):.1f} instructions per select")
        return 0
    best = min(_timed(args.calls) for _ in range(5))
    print(f"{best * 1e9 / (2 * args.calls):.0f} ns per select (best of 5)")
    return 0


def _timed(n: int) -> float:
    start = time.perf_counter()
    calls(n)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
