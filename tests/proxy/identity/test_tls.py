"""The proxy's mTLS over real sockets and real TLS: the inbound acceptor refuses plaintext
when STRICT, takes both when PERMISSIVE, refuses foreign, expired and missing client
certificates; upstream connections refuse a server whose SPIFFE ID the cluster does not
allow; only TLS 1.2+ with forward-secret AEAD suites is spoken; SVID files swap atomically."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.proxy.identity.pki import NOW, Root, sid

from trellis.proxy.config.resources import TlsMode, UpstreamTls
from trellis.proxy.identity.agent import write_files
from trellis.proxy.identity.svid import Svid, parse_spiffe_id
from trellis.proxy.identity.tls import client_context, peer_spiffe_id, server_context
from trellis.proxy.listeners.acceptor import Acceptor
from trellis.proxy.stack.pool import HostPool, PoolCounters, UpstreamConnection

ROOT = Root.make()
SERVER = ROOT.svid(sid("server"))
CLIENT = ROOT.svid(sid("client"))


class Hello(asyncio.Protocol):
    """Answers every connection with who it thinks the peer is, then closes (a plaintext
    client speaks first: its bytes are read before the answer, so the close is clean)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if transport.get_extra_info("ssl_object") is not None:
            self._answer()

    def data_received(self, data: bytes) -> None:
        self._answer()

    def _answer(self) -> None:
        t = self.transport
        peer = peer_spiffe_id(t.get_extra_info("peercert"))
        secure = t.get_extra_info("ssl_object") is not None
        t.write(f"hello {'mtls' if secure else 'plain'} {peer or '-'}\n".encode())  # type: ignore[attr-defined]
        t.close()


@contextlib.asynccontextmanager
async def acceptor(mode: TlsMode, server: Svid = SERVER) -> AsyncIterator[int]:
    sock = socket.create_server(("127.0.0.1", 0))
    context = server_context(server)
    a = Acceptor(sock, Hello, lambda: (mode, context))
    a.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        a.close()


async def talk(port: int, context: ssl.SSLContext | None) -> bytes:
    """What the server says, or b"" when the connection (or handshake) is refused."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), 5
        )
    except (ssl.SSLError, ConnectionError, OSError):
        return b""
    try:
        if context is None:
            writer.write(b"GET / HTTP/1.1\r\n\r\n")  # plaintext must say something first
        return await asyncio.wait_for(reader.read(), 5)
    except (ssl.SSLError, ConnectionError, OSError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_strict_takes_mesh_mtls_only() -> None:
    async with acceptor("STRICT") as port:
        assert await talk(port, client_context(CLIENT)) == f"hello mtls {sid('client')}\n".encode()
        assert await talk(port, None) == b""  # plaintext: refused, nothing answered
        foreign = Root.make("another CA").svid(sid("client"))
        assert await talk(port, client_context(foreign)) == b""
        expired = ROOT.svid(
            sid("client"),
            not_before=NOW - dt.timedelta(hours=2),
            not_after=NOW - dt.timedelta(hours=1),
        )
        assert await talk(port, client_context(expired)) == b""
        future = ROOT.svid(sid("client"), not_before=NOW + dt.timedelta(hours=1))
        assert await talk(port, client_context(future)) == b""
        no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        no_cert.check_hostname = False
        no_cert.load_verify_locations(cadata=ROOT.pem.decode())
        assert await talk(port, no_cert) == b""


async def test_permissive_takes_both_and_disable_takes_plaintext_only() -> None:
    async with acceptor("PERMISSIVE") as port:
        assert await talk(port, None) == b"hello plain -\n"
        assert await talk(port, client_context(CLIENT)) == f"hello mtls {sid('client')}\n".encode()
    async with acceptor("DISABLE") as port:
        assert await talk(port, None) == b"hello plain -\n"
        assert await talk(port, client_context(CLIENT)) == b""


async def test_only_tls_12_and_13_with_forward_secret_aead() -> None:
    async with acceptor("STRICT") as port:
        for version, ciphers, ok in [
            (ssl.TLSVersion.TLSv1_3, None, True),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", True),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA", False),  # CBC: not AEAD
            (ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256", False),  # no ECDHE: not FS
        ]:
            context = client_context(CLIENT)
            context.minimum_version = context.maximum_version = version
            if ciphers:
                with contextlib.suppress(ssl.SSLError):  # the client library may refuse too
                    context.set_ciphers(ciphers)
            answer = await talk(port, context)
            assert bool(answer) == ok, (version, ciphers, answer)


class User:
    """Records what a pooled connection attempt reports (the pool's caller interface)."""

    def __init__(self) -> None:
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_connected(self, conn: UpstreamConnection) -> None:
        self.done.set_result("connected")
        conn.close()

    def on_connect_failed(self, reason: str) -> None:
        self.done.set_result(f"failed: {reason}")


async def test_an_upstream_with_the_wrong_spiffe_id_is_refused() -> None:
    impostor = ROOT.svid(sid("impostor"))
    for server, outcome in [(SERVER, "connected"), (impostor, "not allowed")]:
        async with acceptor("STRICT", server) as port:
            pool = HostPool("127.0.0.1", port, PoolCounters())
            pool.tls = UpstreamTls(sans=(sid("server"),), san_tests=(lambda s: s == sid("server"),))
            pool.tls_context = lambda context=client_context(CLIENT): context  # type: ignore[misc]
            user = User()
            pool.acquire(user)  # type: ignore[arg-type]
            assert outcome in await asyncio.wait_for(user.done, 5)
            if outcome == "not allowed":
                assert pool.counters.identity_refused == 1
            pool.close()


def test_svids_name_exactly_one_spiffe_id_and_renew_at_half_life() -> None:
    assert parse_spiffe_id(SERVER.spiffe_id) == ("test.local", "default", "server")
    assert SERVER.renew_at() == SERVER.not_before + (SERVER.not_after - SERVER.not_before) / 2
    other = ROOT.svid(sid("x"))
    with pytest.raises(ValueError, match="not for our key"):
        Svid.parse(SERVER.chain_pem, other.key_pem, ROOT.pem)


def test_files_for_grpcio_swap_atomically_and_stay_private(tmp_path: Path) -> None:
    first = ROOT.svid(sid("app"))
    current = write_files(tmp_path / "certs", first)
    assert (current / "cert.pem").read_bytes() == first.chain_pem
    assert os.stat(current / "key.pem").st_mode & 0o777 == 0o600
    target_before = os.readlink(current)
    second = ROOT.svid(sid("app"))
    write_files(tmp_path / "certs", second)
    assert (current / "key.pem").read_bytes() == second.key_pem  # same path, new pair
    assert (tmp_path / "certs" / target_before).exists()  # the previous one stays a while
    third = ROOT.svid(sid("app"))
    write_files(tmp_path / "certs", third)
    assert not (tmp_path / "certs" / target_before).exists()  # older ones go
    assert len(list((tmp_path / "certs").glob("gen-*"))) == 2
