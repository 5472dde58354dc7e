"""The Python floor for a sidecar pair: the least an HTTP/1.1 relay on uvloop + httptools does.

`python -m bench.minimal_relay LISTEN_PORT UPSTREAM_PORT` parses requests (GET only, no
body), forwards each to one fixed upstream over one keep-alive connection per client
connection, and relays the upstream's response bytes as they are once llhttp says the
response is complete. No routing, no pool, no retries, no TLS, no metrics: what is left
when everything a mesh does is taken away. Two of them in a row, measured like the
sidecar pair (`python -m bench.minimal_relay --pair`), show how far a Python data plane
could go on this machine, so the sidecar's cost can be told from the language's.

Not a product and not used by Trellis; a yardstick for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httptools
import uvloop


class _Up(asyncio.Protocol):
    def __init__(self, down: _Down) -> None:
        self.down = down
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.buf: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        data = b"".join(self.buf)
        self.buf.clear()
        assert self.down.transport is not None
        self.down.transport.write(data)


class _Down(asyncio.Protocol):
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport | None = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.up: _Up | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.pending = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        fields = b"".join(n + b": " + v + b"\r\n" for n, v in self.headers)
        head = b"GET " + self.url + b" HTTP/1.1\r\n" + fields + b"\r\n"
        self.url, self.headers = b"", []
        if self.up is None:
            self.pending = head
            asyncio.get_running_loop().create_task(self._connect())
        else:
            assert self.up.transport is not None
            self.up.transport.write(head)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: _Up(self), *self.upstream)
        self.up = up
        assert up.transport is not None
        up.transport.write(self.pending)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


async def serve(port: int, upstream: int) -> None:
    _Down.upstream = ("127.0.0.1", upstream)
    server = await asyncio.get_running_loop().create_server(_Down, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def pair() -> None:
    """Backend (HAProxy) + two relays on the measured core, wrk on the other: max rps."""
    from bench import haproxy
    from bench.procs import Child, free_port

    logs = Path("/tmp/trellis-minimal-relay")
    logs.mkdir(exist_ok=True)
    backend_port, second, first = free_port(), free_port(), free_port()
    children = [
        haproxy.start(haproxy.backend_config(backend_port), logs, "backend", ["taskset", "-c", "1"])
    ]
    try:
        for listen, upstream, name in ((second, backend_port, "r2"), (first, second, "r1")):
            argv = ["taskset", "-c", "1", sys.executable, "-m", "bench.minimal_relay"]
            children.append(Child([*argv, str(listen), str(upstream)], logs, name))
        time.sleep(1.5)
        out = subprocess.run(
            ["taskset", "-c", "0", "wrk", "-t1", "-c64", "-d8s", f"http://127.0.0.1:{first}/"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(next(line for line in out.stdout.splitlines() if "Requests/sec" in line))
    finally:
        for child in reversed(children):
            child.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ports", nargs="*", type=int, help="LISTEN_PORT UPSTREAM_PORT")
    p.add_argument("--pair", action="store_true", help="measure a pair against HAProxy")
    args = p.parse_args()
    if args.pair:
        pair()
    else:
        uvloop.run(serve(*args.ports))


if __name__ == "__main__":
    main()
