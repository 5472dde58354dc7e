"""TLS contexts from an SVID: the sidecar's server side (inbound) and client side (to peers).

Policy (issue 4): TLS 1.2 at least (1.3 preferred); with 1.2 only forward-secret
AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305; every 1.3 suite is both).
Peers are verified against the mesh bundle (CERT_REQUIRED: expired, not yet
valid, or foreign certificates fail the handshake); the SPIFFE ID is checked
by the caller against what the config allows (`peer_spiffe_id`), since the
hostname check does not apply to mesh identities.

`ssl.SSLContext` only loads certificates from files: they are written to a
private directory (0700, files 0600) that lives as long as the process, on
/dev/shm (memory) when there is one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: a proxy without an identity never loads cryptography
    from trellis.proxy.identity.svid import Svid

CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20"
_DIR: Path | None = None


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


def peer_spiffe_id(peercert: Any) -> str:
    """The SPIFFE ID in a verified peer certificate (`getpeercert()`'s dict), or ""."""
    if not peercert:
        return ""
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith("spiffe://"):
            return value
    return ""


class TlsContexts:
    """The current TLS contexts of the proxy, rebuilt when the identity rotates: new
    connections take the new ones, open connections keep theirs."""

    __slots__ = ("client", "server", "spiffe_id")

    def __init__(self) -> None:
        self.server: ssl.SSLContext | None = None  # inbound mTLS (client certificate required)
        self.client: ssl.SSLContext | None = None  # to peer sidecars
        self.spiffe_id = ""

    def update(self, svid: Svid) -> None:
        self.server = server_context(svid)
        self.client = client_context(svid)
        self.spiffe_id = svid.spiffe_id

    def client_context(self) -> ssl.SSLContext | None:
        return self.client
