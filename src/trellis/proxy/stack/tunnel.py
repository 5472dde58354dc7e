"""CONNECT tunnels: bytes spliced between the client and an upstream, at L4.

The exchange picks the host as for any request. Outside the mesh (and for the
inbound side's local app) the tunnel connects straight to it. To a mesh
service it goes through the peer's inbound sidecar, as Istio's HBONE does
over HTTP/2: the tunnel first sends `CONNECT 127.0.0.1:APP_PORT` with the
target-port and peer headers, and splices only after that sidecar answers
2xx. The client then gets `200 Connection established`.

An upgrade (WebSocket) becomes a tunnel too, later: the request goes out as
HTTP on a pooled connection, and when the upstream answers 101 the exchange
hands that connection to `Tunnel.splice` (the peer sidecar, seeing the same
101 from its app, has spliced its side already).

Half-closes are passed on (EOF one way does not end the other way) where the
other side's transport can carry one. TLS cannot: the upstream's EOF towards a
TLS client closes that client connection after what was written to it (a
server done sending, a WebSocket closed), and a client's EOF is not passed to
a TLS upstream (the answer may still come). The tunnel ends when both ways are
done or either side resets. Each side's full
write buffer pauses reading on the other. A bug of ours while relaying (`fault`) is
counted and logged, and resets both sides.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.framing import read_connect_answer
from trellis.proxy.identity.tls import peer_spiffe_id
from trellis.proxy.stack.hosts import Host
from trellis.proxy.telemetry.faults import FAULTS

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


class _Upstream(asyncio.Protocol):
    __slots__ = ("tunnel",)

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def data_received(self, data: bytes) -> None:
        try:
            self.tunnel.upstream_data(data)
        except Exception as error:
            self.tunnel.fault(error)

    def eof_received(self) -> bool:
        try:
            self.tunnel.upstream_eof()
        except Exception as error:
            self.tunnel.fault(error)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.upstream_lost()

    def pause_writing(self) -> None:
        self.tunnel.ex.conn.pause_reading(True)

    def resume_writing(self) -> None:
        self.tunnel.ex.conn.pause_reading(False)


class Tunnel:
    __slots__ = (
        "_answer",
        "_down_eof",
        "_pending",
        "_up_eof",
        "ex",
        "host",
        "preface",
        "transport",
    )

    def __init__(self, ex: Exchange, host: Host, preface: bytes | None) -> None:
        self.ex = ex
        self.host = host
        self.preface = preface  # a CONNECT for the peer's inbound sidecar, or None
        self.transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []  # client bytes before the tunnel is open
        self._answer = b""  # the peer sidecar's answer to the preface, while it arrives
        self._down_eof = False
        self._up_eof = False

    def start(self) -> None:
        self.ex.ctx.loop.create_task(self._connect())

    def fault(self, error: Exception) -> None:
        """A bug of ours in the tunnel: counted and logged, both sides reset."""
        FAULTS.record("tunnel", error)
        if self.transport is not None:
            self.transport.abort()
        self.ex.conn.abort()

    async def _connect(self) -> None:
        ex = self.ex
        pool = self.host.pool
        context = pool.tls_context() if pool.tls is not None else None
        if pool.tls is not None and context is None:
            ex.tunnel_failed(503, "UF", "mesh TLS is required and this proxy has no identity")
            return
        try:
            transport, _ = await asyncio.wait_for(
                ex.ctx.loop.create_connection(
                    lambda: _Upstream(self), pool.address, pool.port, ssl=context
                ),
                pool.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            ex.tunnel_failed(503, "UF", f"upstream connect error: {e or 'timeout'}")
            return
        if pool.tls is not None:
            peer = peer_spiffe_id(transport.get_extra_info("peercert"))
            if not pool.tls.allows(peer):
                transport.abort()
                ex.tunnel_failed(503, "UF", f"peer identity {peer or '(none)'} is not allowed")
                return
        if ex.finished:
            transport.close()
            return
        self.transport = transport
        if self.preface is not None:
            transport.write(self.preface)
        else:
            self._open()

    def splice(self, transport: asyncio.BaseTransport) -> None:
        """Tunnel over `transport`, an upstream connection that answered 101 (its protocol
        forwards here); the exchange has sent the 101 to the client."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.preface = None
        self.ex.conn.attach_tunnel(self)

    def _open(self) -> None:
        ex = self.ex
        ex.tunnel_established()
        ex.conn.write(ESTABLISHED)
        ex.conn.attach_tunnel(self)
        pending, self._pending = self._pending, []
        for data in pending:
            self.downstream_data(data)

    # -- client side ----------------------------------------------------------------------

    def downstream_data(self, data: bytes) -> None:
        self.ex.req_bytes += len(data)
        if self.transport is None or self.preface is not None:
            self._pending.append(data)
            return
        self.transport.write(data)

    def downstream_eof(self) -> None:
        # Towards a TLS upstream the half-close is not passed on: a client that shuts
        # its sending side and then reads must still get the answer.
        self._down_eof = True
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_done()

    # -- upstream side --------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        if self.preface is not None:
            # The peer sidecar's answer to our CONNECT, parsed by the HTTP/1 codec.
            self._answer += data
            try:
                answer = read_connect_answer(self._answer)
            except ProtocolError as e:
                self._fail_preface(502, "", e.reason)
                return
            if answer is None:
                return
            if not answer.established:
                self._fail_preface(answer.status, answer.flags, answer.status_line)
                return
            self.preface = None
            self._answer = b""
            self._open()
            if answer.rest:
                self.upstream_data(answer.rest)
            return
        self.ex.resp_bytes += len(data)
        self.ex.conn.write(data)

    def _fail_preface(self, status: int, flags: str, reason: str) -> None:
        """The peer sidecar did not open the tunnel. A refusal of the client's (4xx: its
        policy denied the tunnel, 403 flag RBAC; a bad target) reaches the client as it
        was given, flags included (letters and commas only: the codec keeps no more);
        anything else is the peer's failure (502, UC)."""
        if self.transport is not None:
            self.transport.abort()
        self.transport = None
        if 400 <= status < 500:
            self.ex.tunnel_failed(status, flags, f"peer sidecar refused the tunnel: {reason}")
            return
        self.ex.tunnel_failed(502, "UC", f"peer sidecar refused the tunnel: {reason}")

    def upstream_eof(self) -> None:
        self._up_eof = True
        conn = self.ex.conn
        transport = conn.transport
        if transport is not None and not conn.closed:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                conn.close()  # a TLS client: what was written goes out, then it closes
                return
        self._maybe_done()

    def upstream_lost(self) -> None:
        self.transport = None
        if self.preface is not None and not self.ex.finished:
            self.ex.tunnel_failed(502, "UC", "peer sidecar closed the tunnel")
            return
        self.ex.tunnel_closed(abort=not self._up_eof)

    def _maybe_done(self) -> None:
        if self._down_eof and self._up_eof:
            if self.transport is not None:
                self.transport.close()
            self.ex.tunnel_closed(abort=False)

    # -- used by the exchange -------------------------------------------------------------

    def pause_upstream(self, paused: bool) -> None:
        if self.transport is not None:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
