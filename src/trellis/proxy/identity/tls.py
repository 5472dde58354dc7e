"""TLS contexts from an SVID: the sidecar's server side (inbound) and client side (to peers).

Policy (issue 4): TLS 1.2 at least (1.3 preferred); with 1.2 only forward-secret
AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305; every 1.3 suite is both).
Peers are verified against the mesh bundle (CERT_REQUIRED: expired, not yet
valid, or foreign certificates fail the handshake); the hostname check does not
apply to mesh identities, so the identity is read from the certificate here.
A mesh identity is exactly one URI SAN (SPIFFE X.509-SVID §2: an SVID has
exactly one), a workload SPIFFE ID `spiffe://TD/ns/NS/sa/SA`, of a trust domain
the proxy accepts: a certificate with none, several, a non-SPIFFE URI or a
foreign trust domain names nobody (`peer_spiffe_id` gives "") and is refused
(`peer_refusal` says why) — the bundle may be an organisation's root that signs
far more than the mesh's SVIDs (intermediate mode). The inbound acceptor
refuses such a client before reading a byte of it; upstream, the cluster's
SPIFFE IDs (`UpstreamTls.allows`) are checked against `peer_spiffe_id`.

The accepted trust domain is the one of the proxy's own SVID. A root rotation
keeps the trust domain (only the roots change, and the bundle trusts old and
new), so one is enough; a change of MeshConfig `trustDomain` reaches each proxy
with its next SVID, and until every workload has renewed, peers on either side
of the change refuse each other (as the clusters' SPIFFE IDs and policies on
principals already do): such a change needs trust-domain aliases, not built.

`ssl.SSLContext` only loads certificates from files: they are written to a
private directory (0700, files 0600) that lives as long as the process, on
/dev/shm (memory) when there is one.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trellis.wire import WORKLOAD_ID_PATTERN, WORKLOAD_ID_SHAPE

if TYPE_CHECKING:  # not at run time: a proxy without an identity never loads cryptography
    from trellis.proxy.identity.svid import Svid

CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20"
_DIR: Path | None = None
# A workload's SPIFFE ID, as the mesh CA issues them (the wire contract's rules).
_WORKLOAD_ID = re.compile(WORKLOAD_ID_PATTERN)


def _private_dir() -> Path:
    global _DIR
    if _DIR is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _DIR = Path(tempfile.mkdtemp(prefix="trellis-identity-", dir=base))
        os.chmod(_DIR, 0o700)
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def _files(svid: Svid) -> tuple[str, str]:
    d = _private_dir()
    cert, key = d / f"{svid.serial:x}-cert.pem", d / f"{svid.serial:x}-key.pem"
    for path, data in ((cert, svid.chain_pem), (key, svid.key_pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return str(cert), str(key)


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS_TLS12)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE


def server_context(svid: Svid, *, require_client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    cert, key = _files(svid)
    ctx.load_cert_chain(cert, key)
    os.unlink(key)  # loaded: neither needs to stay on disk
    os.unlink(cert)
    ctx.load_verify_locations(cadata=svid.bundle_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(svid: Svid) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    ctx.check_hostname = False  # mesh identities are SPIFFE IDs: checked by the caller
    ctx.verify_mode = ssl.CERT_REQUIRED
    cert, key = _files(svid)
    ctx.load_cert_chain(cert, key)
    os.unlink(key)
    os.unlink(cert)
    ctx.load_verify_locations(cadata=svid.bundle_pem.decode())
    return ctx


def _uris(peercert: Any) -> list[str]:
    if not peercert:
        return []
    return [str(value) for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]


def peer_spiffe_id(peercert: Any) -> str:
    """The SPIFFE ID of a verified peer certificate (`getpeercert()`'s dict): its one URI
    SAN when that is a workload SPIFFE ID, else "" (no URI SAN, several, or another kind
    of URI: the certificate names nobody). The trust domain is `peer_refusal`'s concern."""
    uris = _uris(peercert)
    if len(uris) == 1 and _WORKLOAD_ID.fullmatch(uris[0]):
        return uris[0]
    return ""


def trust_domain(spiffe_id: str) -> str:
    """The trust domain of a workload SPIFFE ID ("" when it is not one)."""
    found = _WORKLOAD_ID.fullmatch(spiffe_id)
    return found.group(1) if found else ""


def peer_refusal(peercert: Any, trust_domains: frozenset[str]) -> str:
    """Why a verified peer certificate is not a mesh identity we accept ("" when it is):
    exactly one URI SAN, a workload SPIFFE ID of one of `trust_domains`."""
    uris = _uris(peercert)
    if not uris:
        return "the certificate has no URI SAN (no SPIFFE ID)"
    if len(uris) > 1:
        return f"the certificate has {len(uris)} URI SANs; an SVID has exactly one"
    domain = trust_domain(uris[0])
    if not domain:
        return f"{uris[0]!r} is not a workload SPIFFE ID ({WORKLOAD_ID_SHAPE})"
    if domain not in trust_domains:
        accepted = ", ".join(sorted(trust_domains)) or "none"
        return f"{uris[0]} is of trust domain {domain}, not of the mesh's ({accepted})"
    return ""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """What the inbound side takes mTLS connections with: the context, and the trust
    domains whose workloads may be on the other end (`peer_refusal`)."""

    context: ssl.SSLContext
    trust_domains: frozenset[str]

    def refusal(self, peercert: Any) -> str:
        return peer_refusal(peercert, self.trust_domains)


def server_tls(svid: Svid) -> ServerTls:
    """The inbound side of `svid`: its context, accepting its own trust domain."""
    return ServerTls(server_context(svid), frozenset({trust_domain(svid.spiffe_id)}))


class TlsContexts:
    """The current TLS contexts of the proxy, rebuilt when the identity rotates: new
    connections take the new ones, open connections keep theirs."""

    __slots__ = ("client", "server", "spiffe_id")

    def __init__(self) -> None:
        self.server: ServerTls | None = None  # inbound mTLS (client certificate required)
        self.client: ssl.SSLContext | None = None  # to peer sidecars
        self.spiffe_id = ""

    def update(self, svid: Svid) -> None:
        self.server = server_tls(svid)
        self.client = client_context(svid)
        self.spiffe_id = svid.spiffe_id

    def client_context(self) -> ssl.SSLContext | None:
        return self.client
