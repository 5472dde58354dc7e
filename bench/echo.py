"""The transport floor: a grpc.aio unary echo round trip between two processes.

`python -m bench.echo --port P` serves `/bench.Echo/Call` (bytes in, the same
bytes out, no protobuf) on 127.0.0.1 on a uvloop loop, as `trellis control`
runs its gRPC server, and prints `READY` when it listens. `round_trips`
is the client side: sequential calls, one sample per call.

Must not know what it is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc

METHOD = "/bench.Echo/Call"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("READY", flush=True)
    await server.wait_for_termination()


async def round_trips(target: str, calls: int, payload: int, warmup: int) -> list[float]:
    """Seconds per call for `calls` sequential calls, after `warmup` unmeasured ones."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        body = b"x" * payload
        await asyncio.wait_for(channel.channel_ready(), 10)
        for _ in range(warmup):
            await call(body)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            reply = await call(body)
            samples.append(time.perf_counter() - start)
            if len(reply) != payload:
                raise RuntimeError("echo returned a different payload")
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(description="grpc.aio echo server for the transport floor")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
