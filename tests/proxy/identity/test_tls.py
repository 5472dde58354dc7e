"""The proxy's mTLS over real sockets and real TLS: the inbound acceptor refuses plaintext
when STRICT, takes both when PERMISSIVE, refuses foreign, expired and missing client
certificates, and certificates of the mesh CA that do not name exactly one SPIFFE ID of
the mesh's trust domain; upstream connections refuse a server whose SPIFFE ID the cluster
does not allow, or that names several; only TLS 1.2+ with forward-secret AEAD suites is
spoken; SVID files swap atomically."""

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
from cryptography import x509
from tests.proxy.identity.pki import NOW, Root, dns, sid, tls_context, uris

from trellis.proxy.config.resources import TlsMode, UpstreamTls
from trellis.proxy.identity.agent import write_files
from trellis.proxy.identity.svid import Svid
from trellis.proxy.identity.tls import (
    ServerTls,
    client_context,
    peer_refusal,
    peer_spiffe_id,
    server_tls,
)
from trellis.proxy.listeners.acceptor import Acceptor
from trellis.proxy.stack.pool import HostPool, PoolCounters, UpstreamConnection
from trellis.wire import split_workload_id

ROOT = Root.make()
SERVER = ROOT.svid(sid("server"))
CLIENT = ROOT.svid(sid("client"))
TEST_DOMAIN = frozenset({"test.local"})


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
async def serving(mode: TlsMode, tls: ServerTls) -> AsyncIterator[Acceptor]:
    sock = socket.create_server(("127.0.0.1", 0))
    a = Acceptor(sock, Hello, lambda: (mode, tls))
    a.start()
    try:
        yield a
    finally:
        a.close()


@contextlib.asynccontextmanager
async def acceptor(mode: TlsMode, server: Svid = SERVER) -> AsyncIterator[int]:
    async with serving(mode, server_tls(server)) as a:
        yield int(a.sock.getsockname()[1])


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


MESH_IDENTITIES: dict[str, tuple[list[x509.GeneralName], str]] = {
    # name: (the client certificate's SANs, why it is refused; "" for none)
    "good": (uris(sid("client")), ""),
    "good-with-a-dns-name": (uris(sid("client")) + dns("client.example"), ""),
    "no-san": ([], "no URI SAN"),
    "dns-only": (dns("client.example"), "no URI SAN"),
    "two-uris": (uris(sid("client"), sid("other")), "2 URI SANs"),
    "foreign-trust-domain": (
        uris("spiffe://evil.example/ns/default/sa/client"),
        "trust domain evil.example",
    ),
    "not-spiffe": (uris("https://client.example/"), "not a workload SPIFFE ID"),
    "spiffe-not-a-workload": (uris("spiffe://test.local/client"), "not a workload SPIFFE ID"),
    "spiffe-upper-case-domain": (
        uris("spiffe://TEST.local/ns/default/sa/client"),
        "not a workload SPIFFE ID",
    ),
    "spiffe-with-query": (
        uris(sid("client") + "?x=1"),
        "not a workload SPIFFE ID",
    ),
}


def _kind(name: x509.GeneralName) -> str:
    """How `getpeercert()` names a SAN's type."""
    return "URI" if isinstance(name, x509.UniformResourceIdentifier) else "DNS"


def test_a_mesh_identity_is_exactly_one_workload_spiffe_id_of_our_trust_domain() -> None:
    accepted = frozenset({"test.local"})
    for name, (sans, why) in MESH_IDENTITIES.items():
        peercert = {"subjectAltName": tuple((_kind(n), n.value) for n in sans)}
        refusal = peer_refusal(peercert, accepted)
        assert (why in refusal) if why else refusal == "", (name, refusal)
        named = peer_spiffe_id(peercert)
        if name in ("good", "good-with-a-dns-name", "foreign-trust-domain"):
            assert named == sans[0].value, name  # what it names (the trust domain aside)
        else:
            assert named == "", name
    assert peer_refusal({}, accepted) != "" and peer_spiffe_id({}) == ""
    assert peer_refusal(None, accepted) != "" and peer_spiffe_id(None) == ""
    assert "not of the mesh's (none)" in peer_refusal(
        {"subjectAltName": (("URI", sid("client")),)}, frozenset()
    )


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
async def test_a_mesh_ca_certificate_without_one_accepted_spiffe_id_is_refused(
    mode: TlsMode,
) -> None:
    """Real certificates signed by the mesh root, real TLS: each one that does not name
    exactly one workload SPIFFE ID of the trust domain is reset before a byte is read."""
    async with serving(mode, server_tls(SERVER)) as a:
        port = int(a.sock.getsockname()[1])
        for name, (sans, why) in MESH_IDENTITIES.items():
            context = tls_context(*ROOT.leaf(sans), ROOT.pem)
            answer = await talk(port, context)
            expected = f"hello mtls {sans[0].value}\n".encode() if not why else b""
            assert answer == expected, (name, answer)
        refused = sum(1 for _, why in MESH_IDENTITIES.values() if why)
        assert a.statistics()["refused_identity"] == refused
        assert a.statistics()["handshake_failures"] == 0  # the handshakes themselves held


async def test_the_accepted_trust_domain_is_the_servers_own() -> None:
    # One CA, two trust domains: a server of other.domain takes only its own workloads.
    server = ROOT.svid("spiffe://other.domain/ns/default/sa/server")
    async with serving("STRICT", server_tls(server)) as a:
        port = int(a.sock.getsockname()[1])
        test_local = tls_context(*ROOT.leaf(uris(sid("client"))), ROOT.pem)
        other_domain = tls_context(
            *ROOT.leaf(uris("spiffe://other.domain/ns/default/sa/client")), ROOT.pem
        )
        assert await talk(port, test_local) == b""
        assert await talk(port, other_domain) == (
            b"hello mtls spiffe://other.domain/ns/default/sa/client\n"
        )


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


async def connect_upstream(tls: ServerTls, allowed: tuple[str, ...]) -> tuple[str, int]:
    """A pooled connection to a server with `tls`, for a cluster that allows the SPIFFE IDs
    `allowed` (none: any one): (what the pool reported, its identity_refused count)."""
    async with serving("STRICT", tls) as a:
        pool = HostPool("127.0.0.1", int(a.sock.getsockname()[1]), PoolCounters())
        pool.tls = UpstreamTls(sans=allowed, san_tests=tuple(s.__eq__ for s in allowed))
        pool.tls_context = lambda context=client_context(CLIENT): context  # type: ignore[misc]
        user = User()
        pool.acquire(user)  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(user.done, 5), pool.counters.identity_refused
        finally:
            pool.close()


async def test_an_upstream_certificate_that_names_no_single_spiffe_id_is_refused() -> None:
    """A server certificate of the mesh CA naming two SPIFFE IDs (the allowed one first or
    last), or none, is refused however the cluster's SPIFFE IDs are configured."""
    allowed = sid("server")
    for name, sans in {
        "two-uris": uris(allowed, sid("other")),
        "two-uris-allowed-last": uris(sid("other"), allowed),
        "no-uri": dns("server.example"),
        "not-spiffe": uris("https://server.example/"),
    }.items():
        server = ServerTls(tls_context(*ROOT.leaf(sans), ROOT.pem, server=True), TEST_DOMAIN)
        for cluster_allows in ((allowed,), ()):
            outcome, refused = await connect_upstream(server, cluster_allows)
            assert "not allowed" in outcome and refused == 1, (name, cluster_allows, outcome)
    good = ServerTls(tls_context(*ROOT.leaf(uris(allowed)), ROOT.pem, server=True), TEST_DOMAIN)
    for cluster_allows in ((allowed,), ()):
        assert await connect_upstream(good, cluster_allows) == ("connected", 0)


def test_svids_name_exactly_one_spiffe_id_and_renew_at_half_life() -> None:
    assert split_workload_id(SERVER.spiffe_id) == ("test.local", "default", "server")
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
