"""A throwaway PKI for tests of the proxy's TLS: roots, SVIDs (valid, expired, not yet
valid, of another CA), and leaf certificates with any subject alternative names (none,
several URIs, a foreign trust domain...), made with the real `cryptography` library. A
root can also be the mesh CA of a running control plane (`Root.load`)."""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis import wire
from trellis.proxy.identity import crypto
from trellis.proxy.identity.svid import Svid

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Root:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def make(cls, name: str = "test mesh root") -> Root:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> Root:
        """A CA that exists already, e.g. a control plane's `ca/ca-cert.pem` and key."""
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    def leaf(self, sans: Sequence[x509.GeneralName]) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a leaf like an SVID in every way but its SANs (no
        SAN extension at all when `sans` is empty)."""
        key = crypto.new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=1))
            .not_valid_after(NOW + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), crypto.key_pem(key)

    def svid(
        self,
        spiffe_id: str,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        bundle: bytes | None = None,
    ) -> Svid:
        key = crypto.new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(minutes=1))
            .not_valid_after(not_after or NOW + dt.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM)
        return Svid.parse(chain, crypto.key_pem(key), bundle or self.pem)


def sid(sa: str, ns: str = "default") -> str:
    return wire.workload_id("test.local", ns, sa)


def uris(*values: str) -> list[x509.GeneralName]:
    return [x509.UniformResourceIdentifier(v) for v in values]


def dns(*values: str) -> list[x509.GeneralName]:
    return [x509.DNSName(v) for v in values]


def tls_context(
    cert_pem: bytes, key_pem: bytes, bundle_pem: bytes, *, server: bool = False
) -> ssl.SSLContext:
    """A TLS context presenting any certificate (`Svid.parse` takes only good SVIDs):
    a client one that verifies the server against `bundle_pem` but not its name, or a
    server one that asks for a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if not server:
        ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_OPTIONAL if server else ssl.CERT_REQUIRED
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cadata=bundle_pem.decode())
    return ctx
