"""The CA service end to end: real TLS on a free port, real grpcio clients, CSRs from
`cryptography`, the CA's real files and ca.db."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.control.ca.ca_support import make_csr
from tests.control.ca.secure_world import Secure, bundle, call, secure_world, sign

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority
from trellis.control.ca.service import SIGN_METHOD


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[Secure]:
    async with secure_world(tmp_path) as s:
        yield s


async def refused(awaitable: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable  # type: ignore[misc]
    return info.value


async def test_tls_from_the_first_byte_and_the_serving_certificate_names(secure: Secure) -> None:
    # Pinning the bundle, the serving certificate verifies for the IP and both DNS names.
    for name in (None, "localhost", "trellis-control"):
        assert "BEGIN CERTIFICATE" in await bundle(secure.channel(name=name))
    error = await refused(bundle(secure.channel(name="impostor.example")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # A client pinning another CA refuses the control plane.
    stranger = Authority.create(pki.utcnow()).bundle_pem()
    error = await refused(bundle(secure.channel(bundle=stranger)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # A plaintext client gets nothing: the port speaks TLS only.
    async with grpc.aio.insecure_channel(secure.address) as plain:
        error = await refused(call(plain, SIGN_METHOD, {"csr": "x", "token": "y"}, timeout=5))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    stats = secure.port.statistics()
    assert stats["handshakes"] > stats["connections"]  # the refused handshakes


async def test_a_token_gets_its_own_identity_never_another(secure: Secure) -> None:
    created = secure.ca.create_token("reviews", "shop", 3600)
    key, csr = make_csr(uri="spiffe://example.org/ns/shop/sa/payments")
    answer = await call(
        secure.channel(), SIGN_METHOD, {"csr": csr.decode(), "token": created.token}
    )
    chain = pki.load_certs(answer["certificate"].encode())
    assert pki.uri_sans(chain[0]) == ["spiffe://example.org/ns/shop/sa/reviews"]
    assert answer["spiffeId"] == "spiffe://example.org/ns/shop/sa/reviews"
    assert pki.same_key(chain[0], key)  # type: ignore[arg-type]
    roots = pki.load_certs(answer["bundle"].encode())
    assert pki.verify_svid(chain, roots, pki.utcnow()) == [answer["spiffeId"]]
    assert answer["expires"].endswith("Z")
    error = await refused(
        sign(secure.channel(), token=created.token, serviceAccount="payments", namespace="shop")
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "scoped to service account shop/reviews" in (error.details() or "")


async def test_bad_expired_and_revoked_tokens_are_refused(secure: Secure) -> None:
    error = await refused(sign(secure.channel(), token="abc.def"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    revoked = secure.ca.create_token("reviews", "default", 3600)
    secure.ca.revoke_token(revoked.record.id)
    error = await refused(sign(secure.channel(), token=revoked.token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (error.details() or "")
    expiring = secure.ca.create_token("reviews", "default", 60)
    secure.clock.offset = 120
    error = await refused(sign(secure.channel(), token=expiring.token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in (error.details() or "")


async def test_renewal_with_the_current_certificate_until_its_token_is_revoked(
    secure: Secure,
) -> None:
    svid, token_id = await secure.join("reviews")
    renewed = await sign(secure.channel(svid))
    assert renewed.answer["spiffeId"] == svid.answer["spiffeId"]
    assert renewed.serial != svid.serial
    again = await sign(secure.channel(renewed))  # the renewed certificate renews in turn
    (current,) = secure.ca.current_certificates("default", "reviews")
    assert current.serial == again.serial and current.lineage == svid.serial
    # A renewal asking for another identity is refused, never granted.
    error = await refused(sign(secure.channel(again), serviceAccount="payments"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    secure.ca.revoke_token(token_id)
    for holder in (svid, renewed, again):
        error = await refused(sign(secure.channel(holder)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "renewal refused" in (error.details() or "")


async def test_no_token_and_no_certificate_is_unauthenticated(secure: Secure) -> None:
    error = await refused(sign(secure.channel()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_client_certificate_from_another_ca_never_reaches_the_ca(
    secure: Secure, tmp_path: Path
) -> None:
    async with secure_world(tmp_path / "other") as other:
        foreign, _ = await other.join("reviews")
    before = secure.ca.statistics()
    error = await refused(sign(secure.channel(foreign)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake failed
    assert secure.ca.statistics() == before


async def test_malformed_requests_are_invalid_arguments(secure: Secure) -> None:
    token = secure.ca.create_token("reviews", "default", 3600).token
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, rsa_csr = make_csr(rsa_key)
    cases: list[object] = [
        {"csr": rsa_csr.decode(), "token": token},
        {"csr": "not a csr", "token": token},
        {"token": token},
        {"csr": 5, "token": token},
        ["not", "an", "object"],
        b"{not json",
    ]
    for body in cases:
        error = await refused(call(secure.channel(), SIGN_METHOD, body))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, body


async def test_root_rotation_live_overlap_then_finish(secure: Secure) -> None:
    old_bundle = secure.bundle
    before, _ = await secure.join("reviews")
    secure.ca.rotate()
    # A client that still pins only the old root reaches the reissued serving certificate
    # (its chain carries the new root cross-signed by the old one).
    assert "BEGIN CERTIFICATE" in await bundle(secure.channel(bundle=old_bundle))
    renewed = await sign(secure.channel(before))  # an old-root certificate renews...
    chain = pki.load_certs(renewed.chain_pem)
    assert chain[0].issuer == secure.ca.authority.root.subject  # ...from the new root
    assert len(pki.load_certs(renewed.answer["bundle"].encode())) == 2
    assert pki.verify_svid(chain, pki.load_certs(old_bundle), pki.utcnow())

    secure.ca.finish_rotation()
    assert len(pki.load_certs(secure.bundle)) == 1
    await sign(secure.channel(renewed))  # the new root's certificate still works
    error = await refused(sign(secure.channel(before)))  # the old root's no longer
    assert error.code() == grpc.StatusCode.UNAVAILABLE
