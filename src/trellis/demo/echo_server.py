"""A small proxyless gRPC service for the demo and the tests.

Service `trellis.test.Echo`, methods `Call` and `Other`: the answer is the
workload's name, followed by the answers of every `--call` target (called
through grpc's own xDS client, so `--call xds:///ratings:50051` fans out
through the mesh). No generated code: requests and replies are raw bytes.

The process registers itself (with `--api`) as a proxyless Workload through the registry
API and heartbeats (trellis.run.registration). SIGUSR1 stops the heartbeats
while it keeps serving; SIGTERM/SIGINT deregister and exit.

`--fail-first` answers UNAVAILABLE to every first attempt (a call without
the `grpc-previous-rpc-attempts` header that gRPC retries add). Prints
`READY <port>` once registered.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

from trellis.run.registration import Registration

SERVICE = "trellis.test.Echo"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--label", action="append", default=[], help="k=v, repeatable")
    p.add_argument("--api", help="control plane API URL (none: do not register, e.g. under"
                   " `trellis run --proxyless`, which registers the app)")  # fmt: skip
    p.add_argument("--token", default="")
    p.add_argument("--ttl", type=float, default=3.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--call", action="append", default=[], help="xds:/// target to call per request")
    p.add_argument("--fail-first", action="store_true")
    p.add_argument(
        "--xds",
        action="store_true",
        help="an xDS server (gRFC A36): its listener, mTLS and authorization come from the"
        " control plane (grpc.xds_server_credentials)",
    )
    args = p.parse_args(argv)
    labels = dict(item.split("=", 1) for item in args.label)
    downstream = [grpc.insecure_channel(t).unary_unary(f"/{SERVICE}/Call") for t in args.call]

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        md = dict(context.invocation_metadata())
        if args.fail_first and "grpc-previous-rpc-attempts" not in md:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{args.name}: first attempt refused")
        parts = [args.name]
        forward = tuple((k, v) for k, v in md.items() if k.startswith("x-"))
        for rpc in downstream:
            try:
                parts.append(rpc(b"", timeout=5, metadata=forward).decode())
            except grpc.RpcError as e:
                parts.append(f"error:{e.code().name}")
        return " > ".join(parts).encode() if len(parts) > 1 else args.name.encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), xds=args.xds)
    method = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": method, "Other": method}),)
    )
    if args.xds:
        creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
        port = server.add_secure_port(f"127.0.0.1:{args.port}", creds)
    else:
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()

    workload = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {"name": args.name, "namespace": args.namespace, "labels": labels},
        "spec": {
            "address": "127.0.0.1",
            "proxyless": True,
            "ports": [{"name": "grpc", "port": port, "protocol": "grpc"}],
        },
    }
    registration = Registration(args.api, args.token, workload, ttl=args.ttl) if args.api else None
    if registration is not None:
        registration.start()
        signal.signal(signal.SIGUSR1, lambda *_: registration.pause())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {port}", flush=True)
    while not stop.wait(0.2):
        pass
    if registration is not None:
        registration.close()
    server.stop(grace=1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
