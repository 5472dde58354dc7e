"""Yardsticks for a sidecar pair: the least a Python relay on uvloop (+ httptools) does.

`python -m bench.minimal_relay LISTEN_PORT UPSTREAM_PORT` parses requests (GET only,
no body), forwards each to one fixed upstream over one keep-alive connection per
client connection, and relays the upstream's response bytes as they are once llhttp
says the response is complete. No routing, no pool, no retries, no metrics: what is
left of an HTTP proxy when everything a mesh does is taken away.

`--raw` does not parse at all: bytes from the client go to the upstream connection
and back (TCP splicing in Python), the floor of any proxy built on uvloop here.

`--tls-listen DIR` accepts TLS from the previous hop (client certificate required),
`--tls-upstream DIR` speaks TLS to the next one, both through uvloop's TLS as the
sidecars do, with the files `bench.certs.write_tls_files` wrote into DIR: two relays
with TLS between them are the yardstick of the mTLS sidecar pair.

`python -m bench dataplane` measures pairs of them next to the HAProxy and Trellis
pairs, so the sidecars' cost can be told from the language's and the TLS layer's;
`--pair` is a quick max-rps check of the plaintext pair alone. Not a product and not
used by Trellis.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httptools
import uvloop

from bench.certs import SERVER_NAME


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
    upstream_tls: ssl.SSLContext | None = None

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
        tls = self.upstream_tls
        _, up = await loop.create_connection(
            lambda: _Up(self),
            *self.upstream,
            ssl=tls,
            server_hostname=SERVER_NAME if tls is not None else None,
        )
        self.up = up
        assert up.transport is not None
        up.transport.write(self.pending)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


class _RawUp(asyncio.Protocol):
    def __init__(self, down: _RawDown) -> None:
        self.down = down

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.down.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.transport.close()


class _RawDown(asyncio.Protocol):
    """Bytes both ways, no parsing; what comes before the upstream is connected waits."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)
    upstream_tls: ssl.SSLContext | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.up: _RawUp | None = None
        self.early: list[bytes] = []
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        tls = self.upstream_tls
        _, up = await loop.create_connection(
            lambda: _RawUp(self),
            *self.upstream,
            ssl=tls,
            server_hostname=SERVER_NAME if tls is not None else None,
        )
        self.up = up
        for data in self.early:
            up.transport.write(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.early.append(data)
        else:
            self.up.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.transport.close()


def server_context(directory: Path) -> ssl.SSLContext:
    """TLS towards the previous hop: the bench server leaf, a client certificate required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=directory / "ca.pem")
    context.load_cert_chain(directory / "server.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(directory: Path) -> ssl.SSLContext:
    """TLS towards the next hop: the bench client leaf, the server's name checked."""
    context = ssl.create_default_context(cafile=directory / "ca.pem")
    context.load_cert_chain(directory / "client.pem")
    return context


async def serve(
    port: int,
    upstream: int,
    *,
    raw: bool = False,
    listen_tls: ssl.SSLContext | None = None,
    upstream_tls: ssl.SSLContext | None = None,
) -> None:
    protocol: type[_Down] | type[_RawDown] = _RawDown if raw else _Down
    protocol.upstream = ("127.0.0.1", upstream)
    protocol.upstream_tls = upstream_tls
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port, ssl=listen_tls)
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
    p.add_argument("--pair", action="store_true", help="measure a plaintext pair's max rps")
    p.add_argument("--raw", action="store_true", help="relay bytes, no HTTP parsing")
    p.add_argument("--tls-listen", type=Path, metavar="DIR", help="accept TLS (files in DIR)")
    p.add_argument("--tls-upstream", type=Path, metavar="DIR", help="speak TLS upstream")
    args = p.parse_args()
    if args.pair:
        pair()
        return
    if len(args.ports) != 2:
        p.error("LISTEN_PORT UPSTREAM_PORT are required")
    uvloop.run(
        serve(
            *args.ports,
            raw=args.raw,
            listen_tls=server_context(args.tls_listen) if args.tls_listen else None,
            upstream_tls=client_context(args.tls_upstream) if args.tls_upstream else None,
        )
    )


if __name__ == "__main__":
    main()
