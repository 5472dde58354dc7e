"""The secure port's TLS front: TLS from the first byte, then bytes to the internal gRPC port.

Why: grpcio's Python server either requires a client certificate or never asks
for one; the secure port needs one *optionally* (a first `Sign` has only a join
token, renewals and ADS present the current SVID). So TLS ends here, with
Python's `ssl` (OpenSSL): `CERT_OPTIONAL` verified against the trust bundle,
ALPN `h2`, TLS 1.2+ with forward-secret AEAD suites; the HTTP/2 bytes go on to a
gRPC server on 127.0.0.1.

Per connection: the TLS handshake runs with the SSL context of the moment (the
listening context's SNI callback, which OpenSSL calls for every ClientHello,
with or without a server name, switches the connection to it: a reissued
serving certificate or a new bundle applies to new connections; verification
follows the switched context's roots) → connect upstream → record
`local port -> Peer(address, certificate)` in the `PeerTable` → copy both ways
until either side ends → forget the entry, close both. A failed handshake (no
TLS, a certificate from another CA, an expired one) closes the connection in
the event loop's TLS layer; nothing reaches gRPC.

Shutdown (`aclose`): stop accepting, then cancel the open connections (stop
the gRPC server with its grace period first, so streams end with GOAWAY).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from trellis.control.ca.peers import Peer, PeerCertificate, PeerTable, grpc_peer_name

log = logging.getLogger("trellis.ca")

HANDSHAKE_TIMEOUT = 10.0
CHUNK = 65536
CLOSE_TIMEOUT = 1.0  # asyncio would wait 30 s for a peer that never answers close_notify


class TlsFront:
    def __init__(
        self,
        contexts: Callable[[], ssl.SSLContext],
        upstream_port: int,
        peers: PeerTable,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._contexts = contexts
        self._upstream_port = upstream_port
        self._peers = peers
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats = {"handshakes": 0, "connections": 0}

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks one); returns the port. OSError when it cannot bind."""
        self._server = await asyncio.start_server(
            self._on_connection,
            host,
            port,
            ssl=self._listening_context(),
            ssl_handshake_timeout=self._handshake_timeout,
            reuse_address=True,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def _listening_context(self) -> ssl.SSLContext:
        """A context whose only job is to hand each handshake to the current one."""
        current = self._contexts()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = current.minimum_version
        context.options = current.options
        context.verify_mode = current.verify_mode
        # The protocol versions, options and TLS 1.2 suites stay the listening context's.
        tls12 = [c["name"] for c in current.get_ciphers() if c["protocol"] != "TLSv1.3"]
        context.set_ciphers(":".join(tls12))
        context.set_alpn_protocols(["h2"])
        context.sni_callback = self._select_context
        return context

    def _select_context(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        self._stats["handshakes"] += 1
        ssl_object.context = self._contexts()

    def statistics(self) -> dict[str, int]:
        """Handshakes started, connections that completed one, connections open now."""
        return {**self._stats, "open": len(self._tasks)}

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._stats["connections"] += 1
        address = writer.get_extra_info("peername") or ("?", 0)
        remote = grpc_peer_name(str(address[0]), int(address[1]))
        shutting_down = False
        try:
            await self._serve(reader, writer, remote)
        except asyncio.CancelledError:
            shutting_down = True  # aclose(): drop the connection, do not wait for the peer
        except Exception:
            log.exception("secure port: connection from %s failed", remote)
        finally:
            if shutting_down or task.cancelling():
                writer.transport.abort()
            else:
                await _close(writer)
            self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: str
    ) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        peer = Peer(remote, PeerCertificate.from_der(der) if der else None)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        local_port = int(up_writer.get_extra_info("sockname")[1])
        self._peers.add(local_port, peer)
        try:
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            self._peers.remove(local_port)
            await _close(up_writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, waiting a little for TLS's close_notify exchange; then drop the connection."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (Exception, asyncio.CancelledError):
        writer.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(CHUNK):
        sink.write(data)
        await sink.drain()


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy a->b and b->a until either direction ends or fails (HTTP/2 needs no half-close)."""
    pipes = {
        asyncio.create_task(_pipe(a_reader, b_writer)),
        asyncio.create_task(_pipe(b_reader, a_writer)),
    }
    try:
        done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.debug("secure port: connection ended: %r", exc)
    finally:
        for task in pipes:
            task.cancel()
        # Not suppressing CancelledError here: our own cancellation (aclose) must go on.
        await asyncio.gather(*pipes, return_exceptions=True)
