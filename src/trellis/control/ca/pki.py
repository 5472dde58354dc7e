"""Certificates and keys: building, parsing and checking them with `cryptography`. Pure.

Owns the X.509 profile of every certificate the mesh makes:
- roots: self-signed, CA:true pathlen 1 (a rotation cross-signs the next root under
  the current one), keyCertSign + cRLSign, ~10 years;
- cross-signed roots: the next root's subject and key under the current root,
  CA:true pathlen 0, valid while both roots are;
- workload SVIDs: empty subject, exactly one URI SAN (critical), CA:false,
  digitalSignature, EKU serverAuth + clientAuth;
- the control plane's serving certificate: DNS and IP SANs, serverAuth.
Every certificate carries subject and authority key identifiers, so a verifier
picks the right issuer when two roots are trusted during a rotation.

Knows nothing of files, databases or the network; times are given, never read,
except `utcnow()` for callers that want the clock. Bad input raises `BadInput`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
ROOT_LIFETIME = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(seconds=60)  # not-before this far in the past


class BadInput(ValueError):
    """A certificate, key or CSR that cannot be used, with the reason."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keys and PEM -----------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: CaKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> CaKey:
    """An unencrypted EC or RSA private key from PEM."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise BadInput(f"not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise BadInput(f"a CA key must be ECDSA or RSA, not {type(key).__name__}")
    return key


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM blob, in order; BadInput when there is none."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise BadInput(f"not PEM certificates: {e}") from None
    if not certs:
        raise BadInput("no certificate found")
    return certs


def same_key(cert: x509.Certificate, key: CaKey) -> bool:
    return _spki(cert.public_key()) == _spki(key.public_key())


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


# -- CSRs -------------------------------------------------------------------------------


def parse_csr(pem: bytes | str) -> x509.CertificateSigningRequest:
    """A CSR whose signature verifies and whose key is ECDSA P-256; BadInput otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as e:
        raise BadInput(f"not a PEM certificate signing request: {e}") from None
    if not csr.is_signature_valid:
        raise BadInput("the CSR's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInput(f"the CSR's key must be ECDSA P-256, not {_describe_key(key)}")
    return csr


# -- building ---------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trellis"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: CaKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def make_root(
    key: ec.EllipticCurvePrivateKey, common_name: str, now: dt.datetime
) -> x509.Certificate:
    """A self-signed mesh root (pathlen 1: it may sign one cross-signed root below it)."""
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return _sign(builder, key)


def cross_sign(
    cert: x509.Certificate, issuer: x509.Certificate, issuer_key: CaKey, now: dt.datetime
) -> x509.Certificate:
    """`cert` (a new root) re-issued under `issuer`: same subject and key, CA:true pathlen 0.

    A leaf signed by the new root then verifies against a bundle that holds only
    the old root, when the chain carries this certificate.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(not_after(cert), not_after(issuer)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    return _sign(builder, issuer_key)


def issue_svid(
    public_key: ec.EllipticCurvePublicKey,
    spiffe_id: str,
    issuer: x509.Certificate,
    issuer_key: CaKey,
    now: dt.datetime,
    expires: dt.datetime,
) -> x509.Certificate:
    """A workload X.509 SVID: exactly one URI SAN, CA:false, serverAuth + clientAuth."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(expires)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # The subject is empty, so the SAN must be critical (RFC 5280 4.2.1.6).
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    return _sign(builder, issuer_key)


def issue_serving(
    public_key: ec.EllipticCurvePublicKey,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    issuer: x509.Certificate,
    issuer_key: CaKey,
    now: dt.datetime,
    expires: dt.datetime,
) -> x509.Certificate:
    """The control plane's TLS server certificate for the secure port."""
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("trellis-control"))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(expires)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    return _sign(builder, issuer_key)


def serving_names(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    """(DNS names, IP addresses) of a serving certificate's SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(san.get_values_for_type(x509.DNSName))
    ips = frozenset(str(a) for a in san.get_values_for_type(x509.IPAddress))
    return dns, ips


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _describe_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__


def verify_svid(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: dt.datetime
) -> list[str]:
    """The URI SANs of `chain[0]` once the chain verifies against `roots` at `now` (as a
    TLS peer verifies a client certificate); BadInput with the reason otherwise."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    verifier = PolicyBuilder().store(Store(list(roots))).time(now).build_client_verifier()
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as e:
        raise BadInput(f"the chain does not verify: {e}") from None
    names = verified.subjects or ()
    return [str(n.value) for n in names if isinstance(n, x509.UniformResourceIdentifier)]
