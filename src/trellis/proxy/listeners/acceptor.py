"""Acceptor: the inbound listener's accept loop, which tells mTLS from plaintext by the
first byte and hands each connection to the event loop with or without TLS.

Why not `loop.create_server(ssl=...)`: the inbound mode comes from xDS and may
change at any time (STRICT, PERMISSIVE, DISABLE), and PERMISSIVE takes both on
one port, as Istio's sidecars do. So the acceptor accepts itself, waits until
the client's first byte is there, peeks at it (MSG_PEEK: nothing is consumed),
and then calls `loop.connect_accepted_socket` with the server TLS context
when the byte starts a TLS handshake (0x16), else without. The TLS itself is
the event loop's native implementation.

An mTLS connection is first given to a `_Gate`: once the handshake is done
(and before any byte of the client is read: asyncio and uvloop call
`connection_made` first), it checks that the client certificate names exactly
one SPIFFE ID of a trust domain we accept (`ServerTls.refusal`), then hands
the transport to the real protocol (`set_protocol`: nothing stays in between),
or resets the connection. Python's `ssl` has no verify callback that could
refuse it inside the handshake, as Envoy's SAN matching does; the client sees
the connection reset at once and no request is parsed. A 403 instead would
read and parse requests from a peer that has no identity, and it would differ
from how a certificate of a foreign CA is treated (a failed handshake).

Refusals (counted in `statistics()`): plaintext while STRICT, a handshake while
TLS is not configured, a client that sends nothing within `SNIFF_TIMEOUT`, a
failed handshake (foreign, expired or missing client certificate), a client
certificate that names no accepted identity (`refused_identity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from trellis.proxy.config.resources import TlsMode
from trellis.proxy.identity.tls import ServerTls

log = logging.getLogger("trellis.proxy.inbound")

SNIFF_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
TLS_HANDSHAKE_BYTE = 0x16

TlsPolicy = Callable[[], tuple[TlsMode, ServerTls | None]]


class Acceptor:
    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], Any],
        policy: TlsPolicy,
    ) -> None:
        self.sock = sock
        self.factory = protocol_factory
        self.policy = policy  # the current mode and server context, asked per connection
        self._loop = asyncio.get_event_loop()
        self._waiting: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.counts = {
            "accepted": 0,
            "tls": 0,
            "plaintext": 0,
            "refused_plaintext": 0,
            "refused_tls": 0,
            "handshake_failures": 0,
            "refused_identity": 0,
            "silent": 0,
        }

    def start(self) -> None:
        self.sock.setblocking(False)
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then let the loop breathe
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept failed: %s", e)
                return
            conn.setblocking(False)
            self.counts["accepted"] += 1
            fd = conn.fileno()
            timer = self._loop.call_later(SNIFF_TIMEOUT, self._silent, fd)
            self._waiting[fd] = (conn, timer)
            self._loop.add_reader(fd, self._sniff, fd)

    def _silent(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        if entry is not None:
            self._loop.remove_reader(fd)
            self.counts["silent"] += 1
            entry[0].close()

    def _sniff(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        self._loop.remove_reader(fd)
        if entry is None:
            return
        conn, timer = entry
        timer.cancel()
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._waiting[fd] = entry  # spurious wake-up: wait again
            self._loop.add_reader(fd, self._sniff, fd)
            return
        except OSError:
            conn.close()
            return
        if not first:
            conn.close()  # closed before saying anything
            return
        mode, tls = self.policy()
        if first[0] == TLS_HANDSHAKE_BYTE:
            if tls is None or mode == "DISABLE":
                self.counts["refused_tls"] += 1
                conn.close()
                return
            self.counts["tls"] += 1
            self._hand_over(conn, tls)
        else:
            if mode == "STRICT":
                self.counts["refused_plaintext"] += 1
                _reset(conn)
                return
            self.counts["plaintext"] += 1
            self._hand_over(conn, None)

    def _hand_over(self, conn: socket.socket, tls: ServerTls | None) -> None:
        if tls is None:
            coro = self._loop.connect_accepted_socket(self.factory, conn)
        else:
            coro = self._loop.connect_accepted_socket(
                lambda: _Gate(self, tls),
                conn,
                ssl=tls.context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._handed_over)

    def _handed_over(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.counts["handshake_failures"] += 1
            log.info("inbound TLS handshake failed: %s", error)

    def close(self) -> None:
        """Stop accepting; connections already handed over are not touched."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.sock.fileno())
        for fd, (conn, timer) in list(self._waiting.items()):
            timer.cancel()
            self._loop.remove_reader(fd)
            conn.close()
        self._waiting.clear()
        self.sock.close()

    def statistics(self) -> dict[str, int]:
        return dict(self.counts)


class _Gate:
    """The first protocol of an mTLS connection: lets it through to the listener's
    protocol once the client certificate names an identity we accept, else resets it."""

    __slots__ = ("acceptor", "tls")

    def __init__(self, acceptor: Acceptor, tls: ServerTls) -> None:
        self.acceptor = acceptor
        self.tls = tls

    def connection_made(self, transport: Any) -> None:
        acceptor = self.acceptor
        why = self.tls.refusal(transport.get_extra_info("peercert"))
        if why:
            acceptor.counts["refused_identity"] += 1
            peer = transport.get_extra_info("peername")
            log.info("inbound mTLS client %s refused: %s", peer, why)
            transport.abort()
            return
        protocol = acceptor.factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    # Only until the hand-over, or after a refusal: nothing is read or kept.
    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def _reset(conn: socket.socket) -> None:
    """Close with a reset: nothing of the refused connection is read or answered."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
