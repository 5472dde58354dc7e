"""Keys, CSRs and SVIDs as data. Pure: no I/O, no clock (times are passed in).

The key is ECDSA P-256, made here and never sent anywhere: only the CSR leaves
the process. An SVID is read into `Svid`: its SPIFFE ID (the one URI SAN), its
serial and validity, and the PEM the TLS stack loads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def csr_pem(key: ec.EllipticCurvePrivateKey, spiffe_id: str = "") -> bytes:
    """A CSR for `key`. The CA ignores its subject and SANs (it decides the identity);
    the URI SAN is there for humans reading the CSR."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trellis")])
    )
    if spiffe_id:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def spiffe_ids(cert: x509.Certificate) -> list[str]:
    """The certificate's URI SANs that are SPIFFE IDs."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return [u for u in uris if u.startswith("spiffe://")]


@dataclass(frozen=True, slots=True)
class Svid:
    """An issued identity: the chain (leaf first) and key as PEM, plus what it says."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes  # the trusted roots
    spiffe_id: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def parse(cls, chain_pem: bytes, key: bytes, bundle_pem: bytes) -> Svid:
        """Read an SVID; ValueError when it is not exactly one SPIFFE ID for this key."""
        certs = x509.load_pem_x509_certificates(chain_pem)
        if not certs:
            raise ValueError("no certificate in the answer")
        leaf = certs[0]
        ids = spiffe_ids(leaf)
        if len(ids) != 1:
            raise ValueError(f"an SVID has exactly one SPIFFE ID, this one has {ids}")
        private = serialization.load_pem_private_key(key, password=None)
        if leaf.public_key().public_numbers() != private.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError("the certificate is not for our key")
        return cls(
            chain_pem=chain_pem,
            key_pem=key,
            bundle_pem=bundle_pem,
            spiffe_id=ids[0],
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )

    def renew_at(self) -> dt.datetime:
        """Half-way through its validity (DESIGN §5)."""
        return self.not_before + (self.not_after - self.not_before) / 2

    def seconds_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds()


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def parse_spiffe_id(value: str) -> tuple[str, str, str] | None:
    """(trust domain, namespace, service account) of `spiffe://TD/ns/NS/sa/SA`, or None."""
    if not value.startswith("spiffe://"):
        return None
    parts = value[len("spiffe://") :].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
        return None
    return parts[0], parts[2], parts[4]
