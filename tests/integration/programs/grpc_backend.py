"""A real grpcio backend that registers itself as a proxyless Workload.

Service `trellis.test.Echo`, method `Call`: answers with its own workload name
(raw bytes, no generated code). It registers through the control plane's
registry API and heartbeats (trellis.run.registration), as `trellis run
--proxyless` will. Signals: SIGUSR1 stops heartbeats (the process keeps serving), SIGTERM
deregisters and exits.

Options: --fail-first answers UNAVAILABLE to every first attempt (a call
without the `grpc-previous-rpc-attempts` header that retries add).
Prints `READY <port>` once registered.
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--api", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--ttl", type=float, default=3.0)
    p.add_argument("--fail-first", action="store_true")
    args = p.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        md = dict(context.invocation_metadata())
        if args.fail_first and "grpc-previous-rpc-attempts" not in md:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{args.name}: first attempt refused")
        return args.name.encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Call": grpc.unary_unary_rpc_method_handler(call),
            "Other": grpc.unary_unary_rpc_method_handler(call),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
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
    registration = Registration(args.api, args.token, workload, ttl=args.ttl)
    registration.start()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: registration.pause())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {port}", flush=True)
    while not stop.wait(0.2):
        pass
    registration.close()
    server.stop(grace=1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
