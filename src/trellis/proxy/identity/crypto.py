"""The X.509 work of an identity, with `cryptography`: the P-256 key, the CSR, reading
an issued certificate. Pure (no I/O, no clock).

A sidecar runs this in a short-lived child (`keygen`) so that its own process never
loads the library (~18 MB of RSS, its own OpenSSL); the key travels back over a pipe
between the two processes of the same proxy and is never sent anywhere else.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trellis.proxy.identity.svid import Svid
from trellis.wire import SPIFFE_SCHEME


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
    return [u for u in uris if u.startswith(SPIFFE_SCHEME)]


def parse_svid(chain_pem: bytes, key: bytes, bundle_pem: bytes) -> Svid:
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
    return Svid(
        chain_pem=chain_pem,
        key_pem=key,
        bundle_pem=bundle_pem,
        spiffe_id=ids[0],
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )
