"""The CA's policy without transport: join tokens, renewal, what is recorded (real files and
SQLite in tmp_path, a fake clock)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.control.ca.ca_support import FakeClock, make_csr

from trellis.control.ca import pki
from trellis.control.ca.db import CaDb
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.issuer import (
    CertificateAuthority,
    InvalidArgument,
    Issued,
    MeshSettings,
    PermissionDenied,
    SignRequest,
    Unauthenticated,
)
from trellis.control.ca.peers import PeerCertificate

START = 1_900_000_000.0
TTL = dt.timedelta(hours=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def ca(tmp_path: Path, clock: FakeClock) -> Iterator[CertificateAuthority]:
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, None, None, pki.utcnow())
    db = CaDb(tmp_path / "ca.db")

    async def settings() -> MeshSettings:
        return MeshSettings("example.org", TTL)

    yield CertificateAuthority(authority, files, db, settings, clock=clock)
    db.close()


def presented(issued: Issued) -> PeerCertificate:
    leaf = pki.load_certs(issued.chain_pem)[0]
    return PeerCertificate.from_der(leaf.public_bytes(serialization.Encoding.DER))


def csr() -> str:
    return make_csr()[1].decode()


async def test_a_token_issues_its_own_identity_whatever_the_csr_asks(
    ca: CertificateAuthority,
) -> None:
    token = ca.create_token("reviews", "shop", 3600).token
    _, wants_payments = make_csr(uri="spiffe://example.org/ns/shop/sa/payments")
    issued = await ca.sign(SignRequest(wants_payments.decode(), token=token), None)
    assert str(issued.spiffe_id) == "spiffe://example.org/ns/shop/sa/reviews"
    leaf = pki.load_certs(issued.chain_pem)[0]
    assert pki.uri_sans(leaf) == ["spiffe://example.org/ns/shop/sa/reviews"]
    assert issued.not_after == dt.datetime.fromtimestamp(START, dt.UTC) + TTL
    with pytest.raises(PermissionDenied, match="scoped to service account shop/reviews"):
        await ca.sign(SignRequest(csr(), token=token, service_account="payments"), None)
    with pytest.raises(PermissionDenied, match="not other/reviews"):
        await ca.sign(SignRequest(csr(), token=token, namespace="other"), None)


async def test_bad_unknown_revoked_and_expired_tokens(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    created = ca.create_token("reviews", "default", 60)
    token_id, _, secret = created.token.partition(".")
    for bad in ("nonsense", f"{token_id}.wrong-secret", f"ffffffffffff.{secret}"):
        with pytest.raises(Unauthenticated, match="invalid join token"):
            await ca.sign(SignRequest(csr(), token=bad), None)
    clock.advance(61)
    with pytest.raises(PermissionDenied, match="expired"):
        await ca.sign(SignRequest(csr(), token=created.token), None)
    other = ca.create_token("reviews", "default", 60)
    assert ca.revoke_token(other.record.id) is not None
    with pytest.raises(PermissionDenied, match="was revoked"):
        await ca.sign(SignRequest(csr(), token=other.token), None)
    assert ca.revoke_token("unknown") is None


async def test_renewal_keeps_identity_and_lineage_until_the_token_is_revoked(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    created = ca.create_token("reviews", "default", 60)
    first = await ca.sign(SignRequest(csr(), token=created.token), None)
    clock.advance(3600)  # the token has expired: renewals go on
    second = await ca.sign(SignRequest(csr()), presented(first))
    assert second.spiffe_id == first.spiffe_id and second.serial != first.serial
    current = ca.current_certificates()
    assert [c.serial for c in current] == [second.serial]  # newest of the lineage only
    assert current[0].token_id == created.record.id and current[0].lineage == first.serial
    ca.record_node(second.serial, "sidecar~reviews-1.default")
    assert ca.current_certificates("default", "reviews")[0].node == "sidecar~reviews-1.default"
    assert ca.certificates_of_token(created.record.id) == 1

    ca.revoke_token(created.record.id)
    with pytest.raises(PermissionDenied, match="renewal refused"):
        await ca.sign(SignRequest(csr()), presented(second))
    assert ca.statistics() == {"issued": 1, "renewed": 1, "refused": 1}


async def test_renewal_needs_a_certificate_this_ca_issued(ca: CertificateAuthority) -> None:
    with pytest.raises(Unauthenticated, match="no join token and no client certificate"):
        await ca.sign(SignRequest(csr()), None)
    stranger = PeerCertificate("abc", ("spiffe://example.org/ns/default/sa/x",), pki.utcnow())
    with pytest.raises(Unauthenticated, match="not issued by this CA"):
        await ca.sign(SignRequest(csr()), stranger)
    not_svid = PeerCertificate("abc", (), pki.utcnow())
    with pytest.raises(Unauthenticated, match="not a mesh SVID"):
        await ca.sign(SignRequest(csr()), not_svid)


async def test_bad_csr_and_bad_token_scope_are_invalid_arguments(
    ca: CertificateAuthority,
) -> None:
    token = ca.create_token("reviews", "default", 60).token
    rsa_csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))[1]
    with pytest.raises(InvalidArgument, match="ECDSA P-256"):
        await ca.sign(SignRequest(rsa_csr.decode(), token=token), None)
    with pytest.raises(InvalidArgument, match="not a valid service account"):
        ca.create_token("a/b", "default", 60)
    with pytest.raises(InvalidArgument, match="positive"):
        ca.create_token("a", "default", 0)


async def test_tokens_are_stored_as_digests_and_listed(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    created = ca.create_token("reviews", "default", 60)
    secret = created.token.partition(".")[2]
    assert secret not in (tmp_path / "ca.db").read_bytes().decode(errors="replace")
    (listed,) = ca.tokens()
    assert listed.id == created.record.id and listed.sha256 != secret
    assert listed.expires == START + 60 and not listed.revoked


async def test_rotation_is_saved_before_use_and_announced(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    seen = []
    ca.subscribe(seen.append)
    old_root = ca.authority.root
    rotated = ca.rotate()
    assert seen == [rotated] and rotated.rotating
    assert CaFiles(tmp_path / "ca").load().root == rotated.root
    token = ca.create_token("reviews", "default", 60).token
    issued = await ca.sign(SignRequest(csr(), token=token), None)
    assert pki.load_certs(issued.chain_pem)[0].issuer == rotated.root.subject
    assert pki.load_certs(issued.bundle_pem) == [rotated.root, old_root]
    assert ca.finish_rotation().roots == (rotated.root,)
    assert ca.finish_rotation() is ca.authority  # nothing left to finish
    assert len(seen) == 2
