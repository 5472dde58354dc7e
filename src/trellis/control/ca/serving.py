"""The control plane's own TLS identity on the secure port, kept fresh.

Names: DNS `localhost` and `trellis-control`, the listen address (an IP SAN, or
a DNS SAN for a host name; 127.0.0.1 and ::1 for the wildcard addresses), and
every `--secure-san`. Lifetime 30 days, never past the CA's signing chain.

The certificate is reissued (new key) when it is missing, signed by another
signing certificate (a rotation), carries another chain than the CA's
intermediates now, names other SANs, or has less than a third of its life left.
`refresh` does that and rebuilds the server `ssl.SSLContext`, which also holds
the trusted roots for client certificates (optional, verified when presented):
new connections use the new context, open ones keep theirs.

`names_for` and `reissue_reason` are pure; `ServingCertificate` writes its files
through `CaFiles` and builds SSL contexts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority
from trellis.control.ca.files import SERVING_CERT, SERVING_KEY, CaFiles

log = logging.getLogger("trellis.ca")

SERVING_LIFETIME = dt.timedelta(days=30)
BASE_DNS_NAMES = ("localhost", "trellis-control")
_WILDCARDS = {"0.0.0.0": ("127.0.0.1",), "::": ("::1",), "": ("127.0.0.1",)}
# TLS 1.2 suites: forward-secret AEAD only (TLS 1.3's are all AEAD + ECDHE).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class ServingNames:
    dns: frozenset[str]
    ips: frozenset[str]


def names_for(listen_host: str, extra: Sequence[str] = ()) -> ServingNames:
    """The SANs for a secure port listening on `listen_host`, plus `extra` (IPs or DNS names)."""
    dns = set(BASE_DNS_NAMES)
    ips: set[str] = set()
    for name in (*_WILDCARDS.get(listen_host, (listen_host,)), *extra):
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name.lower())
    return ServingNames(frozenset(dns), frozenset(ips))


def reissue_reason(
    chain: Sequence[x509.Certificate] | None,
    authority: Authority,
    names: ServingNames,
    now: dt.datetime,
) -> str | None:
    """Why the serving certificate `chain` must be reissued, or None when it may stay."""
    if not chain:
        return "none yet"
    leaf = chain[0]
    if not pki.issued_by(leaf, authority.cert):
        return "signed by a previous CA"
    if [pki.fingerprint(c) for c in chain[1:]] != [
        pki.fingerprint(c) for c in authority.intermediates
    ]:
        return "the CA's chain changed"
    if pki.serving_names(leaf) != (names.dns, names.ips):
        return "its names changed"
    lifetime = pki.not_after(leaf) - leaf.not_valid_before_utc
    if pki.not_after(leaf) - now < lifetime / 3:
        return "it nears expiry"
    return None


class ServingCertificate:
    def __init__(
        self,
        files: CaFiles,
        names: ServingNames,
        lifetime: dt.timedelta = SERVING_LIFETIME,
        clock: Callable[[], dt.datetime] = pki.utcnow,
    ) -> None:
        self._files = files
        self._names = names
        self._lifetime = lifetime
        self._clock = clock
        self._context: ssl.SSLContext | None = None
        self.chain: list[x509.Certificate] = []

    @property
    def not_after(self) -> dt.datetime | None:
        return pki.not_after(self.chain[0]) if self.chain else None

    def ssl_context(self) -> ssl.SSLContext:
        """The context for the next TLS connection (call `refresh` first)."""
        assert self._context is not None, "refresh() before serving"
        return self._context

    def refresh(self, authority: Authority) -> bool:
        """Reissue when needed and rebuild the SSL context; True when a new one was issued."""
        now = self._clock()
        stored = self._files.load_serving()
        chain, key = stored if stored is not None else (None, None)
        reason = reissue_reason(chain, authority, self._names, now)
        if reason is not None:
            key = pki.new_key()
            leaf = authority.issue_serving(
                key, sorted(self._names.dns), sorted(self._names.ips), self._lifetime, now
            )
            self._files.save_serving(authority.chain_pem(leaf), key)
            chain = [leaf, *authority.intermediates]
            log.info(
                "serving certificate issued (%s) until %s", reason, pki.not_after(leaf).isoformat()
            )
        assert chain is not None
        self.chain = list(chain)
        self._context = self._build_context(authority)
        return reason is not None

    def _build_context(self, authority: Authority) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION
        context.load_cert_chain(self._files.path(SERVING_CERT), self._files.path(SERVING_KEY))
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=authority.bundle_pem().decode())
        context.set_alpn_protocols(["h2"])
        return context
