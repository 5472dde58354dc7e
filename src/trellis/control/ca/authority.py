"""The CA's signing state: signing key and certificate, trusted roots, rotation. Pure.

Two modes:
- self-signed (the default): the mesh root signs SVIDs itself. `rotate` makes a
  new root (also the new signing certificate) and cross-signs it under the current
  one; the bundle then holds both roots, new first, and SVID chains carry the
  cross-signed certificate, so peers still holding only the old bundle accept them.
  `finish_rotation` drops the old roots and the cross-signed certificate.
- intermediate: the user's intermediate (with its chain up to the user's root,
  and its key) is the signing certificate; the root key never reaches the mesh.
  A new intermediate under another root is adopted with `adopt_intermediate`,
  which keeps the previous roots trusted until `finish_rotation`.

An `Authority` is immutable: every change returns a new one, which the caller
persists (files.py) before using it. Nothing here reads files or the clock
(`now` is given). Bad user input raises `CaSetupError`; bad CSRs `pki.BadInput`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trellis.control.ca import pki
from trellis.wire import SpiffeId


class CaSetupError(Exception):
    """The CA cannot start or change as asked (bad user certificate, wrong mode...)."""


@dataclass(frozen=True, slots=True)
class Authority:
    key: pki.CaKey  # the signing key
    cert: x509.Certificate  # the signing certificate
    issuers: tuple[x509.Certificate, ...]  # what a leaf's chain carries after it (not roots)
    roots: tuple[x509.Certificate, ...]  # the trust bundle, current root first
    cross: x509.Certificate | None = None  # the current root under the previous one, rotating

    # -- construction -----------------------------------------------------------------

    @classmethod
    def create(cls, now: dt.datetime) -> Authority:
        """A new self-signed mesh root that signs SVIDs itself."""
        key = pki.new_key()
        root = pki.make_root(key, _root_name(now), now)
        return cls(key=key, cert=root, issuers=(), roots=(root,))

    @classmethod
    def intermediate(
        cls, chain: Sequence[x509.Certificate], key: pki.CaKey, now: dt.datetime
    ) -> Authority:
        """The user's intermediate: `chain` is it, then its issuers up to and with the root."""
        _check_user_chain(chain, key, now)
        return cls(key=key, cert=chain[0], issuers=tuple(chain[:-1]), roots=(chain[-1],))

    # -- queries ----------------------------------------------------------------------

    @property
    def root(self) -> x509.Certificate:
        return self.roots[0]

    @property
    def self_signed(self) -> bool:
        return not self.issuers

    @property
    def mode(self) -> str:
        return "self-signed" if self.self_signed else "intermediate"

    @property
    def rotating(self) -> bool:
        return len(self.roots) > 1

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """What follows a leaf this CA signs in its chain."""
        return self.issuers + ((self.cross,) if self.cross is not None else ())

    @property
    def not_after(self) -> dt.datetime:
        """When the signing chain (signing certificate and its issuers) stops being valid."""
        return min(pki.not_after(c) for c in (self.cert, *self.issuers))

    def bundle_pem(self) -> bytes:
        return pki.cert_pem(*self.roots)

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        return pki.cert_pem(leaf, *self.intermediates)

    # -- signing ----------------------------------------------------------------------

    def issue(
        self,
        csr_pem: bytes | str,
        spiffe_id: SpiffeId,
        ttl: dt.timedelta,
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        """An SVID for the CSR's key naming only `spiffe_id` (the CSR's names are ignored).

        Valid from a minute ago for `ttl`, never past the signing chain.
        Raises pki.BadInput for a CSR whose signature fails or whose key is not P-256.
        """
        now = now or pki.utcnow()
        csr = pki.parse_csr(csr_pem)
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)  # parse_csr checked it
        expires = min(now + ttl, self.not_after)
        if expires <= now:
            raise CaSetupError("the CA's signing certificate has expired: rotate the CA")
        return pki.issue_svid(public_key, str(spiffe_id), self.cert, self.key, now, expires)

    def sign_csr(
        self,
        csr_pem: bytes | str,
        spiffe_id: SpiffeId,
        ttl: dt.timedelta,
        now: dt.datetime | None = None,
    ) -> tuple[bytes, dt.datetime]:
        """(chain PEM: the SVID then its intermediates, its not-after). See `issue`."""
        leaf = self.issue(csr_pem, spiffe_id, ttl, now)
        return self.chain_pem(leaf), pki.not_after(leaf)

    def issue_serving(
        self,
        key: ec.EllipticCurvePrivateKey,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        lifetime: dt.timedelta,
        now: dt.datetime,
    ) -> x509.Certificate:
        expires = min(now + lifetime, self.not_after)
        return pki.issue_serving(
            key.public_key(), dns_names, ip_addresses, self.cert, self.key, now, expires
        )

    # -- changes ----------------------------------------------------------------------

    def rotate(self, now: dt.datetime) -> Authority:
        """A new root signs from now on; old roots stay trusted until `finish_rotation`."""
        if not self.self_signed:
            raise CaSetupError(
                "the CA is an intermediate under your root: rotate by restarting `trellis "
                "control` with a new --ca-cert/--ca-key (the old root stays trusted until "
                "`trellis ca rotate --finish`)"
            )
        key = pki.new_key()
        root = pki.make_root(key, _root_name(now), now)
        cross = pki.cross_sign(root, self.root, self.key, now)
        return Authority(key=key, cert=root, issuers=(), roots=(root, *self.roots), cross=cross)

    def adopt_intermediate(
        self, chain: Sequence[x509.Certificate], key: pki.CaKey, now: dt.datetime
    ) -> Authority:
        """Sign with the user's (new) intermediate; roots trusted so far stay in the bundle."""
        new = Authority.intermediate(chain, key, now)
        kept = tuple(r for r in self.roots if pki.fingerprint(r) != pki.fingerprint(new.root))
        return replace(new, roots=(new.root, *kept))

    def finish_rotation(self) -> Authority:
        """Trust only the current root again."""
        return replace(self, roots=(self.root,), cross=None)

    def same_signing(self, other: Authority) -> bool:
        return pki.fingerprint(self.cert) == pki.fingerprint(other.cert)


def _root_name(now: dt.datetime) -> str:
    return f"Trellis mesh root {now:%Y-%m-%d} {secrets.token_hex(4)}"


def _check_user_chain(chain: Sequence[x509.Certificate], key: pki.CaKey, now: dt.datetime) -> None:
    if not chain:
        raise CaSetupError("--ca-cert holds no certificate")
    first = chain[0]
    if len(chain) == 1 and pki.is_self_signed(first):
        raise CaSetupError(
            "--ca-cert is a self-signed root: Trellis runs as an intermediate under your root. "
            "Sign an intermediate (CA:true) with your root and pass it followed by the root, "
            "with the intermediate's key; the root key stays with you"
        )
    if not pki.same_key(first, key):
        raise CaSetupError("--ca-key is not the key of the first certificate in --ca-cert")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise CaSetupError("--ca-key: RSA keys must have at least 2048 bits")
    for cert in chain:
        if not pki.is_ca(cert):
            raise CaSetupError(f"--ca-cert: {cert.subject.rfc4514_string()} is not a CA (CA:false)")
        if pki.not_after(cert) <= now or cert.not_valid_before_utc > now + pki.CLOCK_SKEW:
            raise CaSetupError(
                f"--ca-cert: {cert.subject.rfc4514_string()} is not valid now "
                f"({cert.not_valid_before_utc:%Y-%m-%d} to {pki.not_after(cert):%Y-%m-%d})"
            )
    for cert, issuer in itertools.pairwise(chain):
        if not pki.issued_by(cert, issuer):
            raise CaSetupError(
                f"--ca-cert: {cert.subject.rfc4514_string()} is not signed by the next "
                f"certificate ({issuer.subject.rfc4514_string()}); list the intermediate first, "
                "then its issuers up to the root"
            )
    if not pki.is_self_signed(chain[-1]):
        raise CaSetupError(
            "--ca-cert must end with your self-signed root (the intermediate, then its issuers "
            "up to the root), so that the mesh can trust it"
        )
