"""A proxyless gRPC client: `grpc.insecure_channel("xds:///NAME")`, for the demo and tests.

The bootstrap comes from GRPC_XDS_BOOTSTRAP, as for any proxyless app. Calls
`trellis.test.Echo/Call` either `--calls N` times or for `--duration S`
seconds, and prints one JSON line per call when `--stream` is set
(`{"t": wall time at send, "ok": bool, "peer": name|null, "code": str,
"ms": latency}`), then a summary line `{"summary": {...}}` with counts per
backend, errors per code and, with --csds, the client's own CSDS view: every
xDS resource it holds with its status (ACKED, NACKED, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import grpc
import grpc.experimental
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2
from grpc._cython import cygrpc


def csds_dump() -> list[dict[str, str]]:
    response = csds_pb2.ClientStatusResponse.FromString(cygrpc.dump_xds_configs())
    out = []
    for config in response.config:
        for generic in config.generic_xds_configs:
            entry = {
                "type": generic.type_url.rsplit(".", 1)[-1],
                "name": generic.name,
                "status": config_dump_shared_pb2.ClientResourceStatus.Name(generic.client_status),
            }
            if generic.HasField("error_state"):
                entry["error"] = generic.error_state.details
            out.append(entry)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--method", default="Call")
    p.add_argument("--calls", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--stream", action="store_true")
    p.add_argument("--csds", action="store_true")
    p.add_argument("--wait-ready", type=float, default=0.0, help="retry the first call this long")
    p.add_argument(
        "--wait-peers", type=int, default=1, help="with --wait-ready: until N peers answered"
    )
    p.add_argument(
        "--xds-creds",
        action="store_true",
        help="grpc.xds_channel_credentials: mesh mTLS when the control plane says so (A29)",
    )
    args = p.parse_args()
    metadata = tuple(tuple(h.split("=", 1)) for h in args.header)

    if args.xds_creds:
        creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
        channel = grpc.secure_channel(args.target, creds)
    else:
        channel = grpc.insecure_channel(args.target)
    rpc = channel.unary_unary(f"/trellis.test.Echo/{args.method}")
    peers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    first_error = ""

    def one() -> tuple[bool, str | None, str, float]:
        sent = time.monotonic()
        try:
            reply = rpc(b"", timeout=args.timeout, metadata=metadata)
            return True, reply.decode(), "OK", time.monotonic() - sent
        except grpc.RpcError as e:
            nonlocal first_error
            first_error = first_error or f"{e.code().name}: {e.details()}"
            return False, None, e.code().name, time.monotonic() - sent

    if args.wait_ready:
        # Ready: calls succeed, and `--wait-peers` different peers have answered (with
        # round robin, calls all go to the first backend connected until the others are).
        deadline = time.monotonic() + args.wait_ready
        answered: set[str | None] = set()
        while time.monotonic() < deadline:
            ok, peer, *_ = one()
            if ok:
                answered.add(peer)
                if len(answered) >= args.wait_peers:
                    break
            else:
                time.sleep(0.05)
        first_error = ""
    start = time.monotonic()
    n = 0
    while True:
        if args.calls and n >= args.calls:
            break
        if args.duration and time.monotonic() - start >= args.duration:
            break
        if not args.calls and not args.duration:
            break
        wall = time.time()
        ok, peer, code, seconds = one()
        n += 1
        if ok:
            peers[peer or ""] += 1
        else:
            errors[code] += 1
        if args.stream:
            line = {"t": wall, "ok": ok, "peer": peer, "code": code, "ms": round(seconds * 1000, 2)}
            print(json.dumps(line), flush=True)
        if args.interval:
            time.sleep(args.interval)
    summary: dict[str, object] = {
        "calls": n,
        "peers": dict(peers),
        "errors": dict(errors),
        "first_error": first_error,
        "seconds": round(time.monotonic() - start, 3),
    }
    if args.csds:
        summary["csds"] = csds_dump()
    print(json.dumps({"summary": summary}), flush=True)
    channel.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
