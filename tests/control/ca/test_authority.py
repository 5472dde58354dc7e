"""The CA's signing logic, without I/O: SVID profile, CSR checks, roots, rotation, intermediates."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.control.ca.ca_support import make_csr, tampered_csr, user_intermediate, user_root

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority, CaSetupError
from trellis.wire import SpiffeId

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)
REVIEWS = SpiffeId("trellis.local", "shop", "reviews")


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.create(NOW)


def issue(
    authority: Authority, ttl: dt.timedelta = DAY, **csr_names: str
) -> list[x509.Certificate]:
    _, csr = make_csr(**csr_names)
    chain_pem, not_after = authority.sign_csr(csr, REVIEWS, ttl, NOW)
    chain = pki.load_certs(chain_pem)
    assert pki.not_after(chain[0]) == not_after
    return chain


def test_root_is_a_p256_ca_with_path_length_one_for_ten_years(authority: Authority) -> None:
    root = authority.root
    assert authority.cert is root and authority.self_signed and authority.mode == "self-signed"
    assert pki.is_self_signed(root)
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 1
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    key = root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert pki.not_after(root) - NOW == dt.timedelta(days=3650)


def test_svid_has_exactly_one_uri_san_and_the_workload_profile(authority: Authority) -> None:
    (leaf,) = issue(authority)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty
    assert list(san.value) == [x509.UniformResourceIdentifier(str(REVIEWS))]
    assert leaf.subject == x509.Name([])
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.key_encipherment
    assert leaf.issuer == authority.root.subject


def test_svid_validity_starts_a_minute_early_and_lasts_the_ttl(authority: Authority) -> None:
    (leaf,) = issue(authority, ttl=dt.timedelta(hours=3))
    assert leaf.not_valid_before_utc == NOW - dt.timedelta(seconds=60)
    assert pki.not_after(leaf) == NOW + dt.timedelta(hours=3)


def test_svid_key_is_the_csrs_and_the_csrs_names_are_ignored(authority: Authority) -> None:
    key, csr = make_csr(uri="spiffe://trellis.local/ns/shop/sa/payments", common_name="admin")
    (leaf,) = pki.load_certs(authority.sign_csr(csr, REVIEWS, DAY, NOW)[0])
    assert pki.uri_sans(leaf) == [str(REVIEWS)]
    assert pki.same_key(leaf, key)
    assert leaf.subject == x509.Name([])


def test_svid_chain_verifies_against_the_bundle(authority: Authority) -> None:
    chain = issue(authority)
    bundle = pki.load_certs(authority.bundle_pem())
    assert pki.verify_svid(chain, bundle, NOW) == [str(REVIEWS)]
    other = Authority.create(NOW)
    with pytest.raises(pki.BadInput):
        pki.verify_svid(chain, other.roots, NOW)


def test_svid_never_outlives_the_signing_certificate() -> None:
    root, root_key = user_root(NOW)
    inter, inter_key = user_intermediate(root, root_key, NOW, days=0.5)
    authority = Authority.intermediate([inter, root], inter_key, NOW)
    chain = issue(authority, ttl=DAY)
    assert pki.not_after(chain[0]) == pki.not_after(inter)


def test_csr_with_an_rsa_key_is_refused(authority: Authority) -> None:
    _, csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(pki.BadInput, match="ECDSA P-256, not RSA-2048"):
        authority.sign_csr(csr, REVIEWS, DAY, NOW)


def test_csr_with_another_curve_is_refused(authority: Authority) -> None:
    _, csr = make_csr(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(pki.BadInput, match="secp384r1"):
        authority.sign_csr(csr, REVIEWS, DAY, NOW)


def test_csr_signature_is_checked(authority: Authority) -> None:
    with pytest.raises(pki.BadInput, match="signature"):
        authority.sign_csr(tampered_csr(), REVIEWS, DAY, NOW)


def test_garbage_is_not_a_csr(authority: Authority) -> None:
    with pytest.raises(pki.BadInput, match="not a PEM certificate signing request"):
        authority.sign_csr(b"hello", REVIEWS, DAY, NOW)


# -- rotation -------------------------------------------------------------------------------


def test_rotation_overlap_trusts_both_roots_then_finish_only_the_new_one() -> None:
    old = Authority.create(NOW)
    old_chain = issue(old)
    rotating = old.rotate(NOW)
    assert rotating.rotating and not old.rotating
    assert [pki.fingerprint(r) for r in rotating.roots[1:]] == [pki.fingerprint(old.root)]
    new_chain = issue(rotating)
    assert new_chain[0].issuer == rotating.root.subject != old.root.subject
    bundle = pki.load_certs(rotating.bundle_pem())
    # During the overlap, certificates from either root verify against the bundle...
    assert pki.verify_svid(old_chain, bundle, NOW) == [str(REVIEWS)]
    assert pki.verify_svid(new_chain, bundle, NOW) == [str(REVIEWS)]
    # ...and a new one also verifies for a peer that still has only the old bundle, through
    # the cross-signed root its chain carries.
    assert len(new_chain) == 2
    assert pki.verify_svid(new_chain, [old.root], NOW) == [str(REVIEWS)]

    finished = rotating.finish_rotation()
    final_bundle = pki.load_certs(finished.bundle_pem())
    assert [pki.fingerprint(r) for r in final_bundle] == [pki.fingerprint(rotating.root)]
    latest_chain = issue(finished)
    assert len(latest_chain) == 1  # no cross-signed certificate any more
    assert pki.verify_svid(latest_chain, final_bundle, NOW) == [str(REVIEWS)]
    assert pki.verify_svid(new_chain[:1], final_bundle, NOW) == [str(REVIEWS)]
    with pytest.raises(pki.BadInput):
        pki.verify_svid(old_chain, final_bundle, NOW)


def test_cross_signed_root_may_only_sign_leaves() -> None:
    rotating = Authority.create(NOW).rotate(NOW)
    assert rotating.cross is not None
    constraints = rotating.cross.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert pki.same_key(rotating.cross, rotating.key)
    assert rotating.cross.subject == rotating.root.subject


# -- intermediate mode ----------------------------------------------------------------------


def test_intermediate_mode_chain_verifies_against_the_users_root() -> None:
    root, root_key = user_root(NOW)
    inter, inter_key = user_intermediate(root, root_key, NOW)
    authority = Authority.intermediate([inter, root], inter_key, NOW)
    assert authority.mode == "intermediate" and not authority.self_signed
    assert [pki.fingerprint(r) for r in authority.roots] == [pki.fingerprint(root)]
    chain = issue(authority)
    assert [c.subject for c in chain[1:]] == [inter.subject]  # leaf, then the intermediate
    assert pki.verify_svid(chain, [root], NOW) == [str(REVIEWS)]
    with pytest.raises(CaSetupError, match="intermediate under your root"):
        authority.rotate(NOW)


def test_a_new_intermediate_under_another_root_keeps_the_old_root_trusted() -> None:
    root, root_key = user_root(NOW)
    inter, inter_key = user_intermediate(root, root_key, NOW)
    first = Authority.intermediate([inter, root], inter_key, NOW)
    old_chain = issue(first)
    root2, root2_key = user_root(NOW, "Example Corp Root 2")
    inter2, inter2_key = user_intermediate(root2, root2_key, NOW)
    second = first.adopt_intermediate([inter2, root2], inter2_key, NOW)
    assert second.rotating
    bundle = pki.load_certs(second.bundle_pem())
    assert pki.verify_svid(old_chain, bundle, NOW)
    assert pki.verify_svid(issue(second), bundle, NOW)
    assert not second.finish_rotation().rotating


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("root only", "self-signed root"),
        ("wrong key", "not the key"),
        ("no root", "must end with your self-signed root"),
        ("wrong order", "is not signed by the next"),
        ("leaf", "is not a CA"),
    ],
)
def test_bad_user_ca_is_refused_with_the_reason(case: str, message: str) -> None:
    root, root_key = user_root(NOW)
    inter, inter_key = user_intermediate(root, root_key, NOW)
    other_key = ec.generate_private_key(ec.SECP256R1())
    chain: list[x509.Certificate]
    key: pki.CaKey
    if case == "root only":
        chain, key = [root], root_key
    elif case == "wrong key":
        chain, key = [inter, root], other_key
    elif case == "no root":
        chain, key = [inter], inter_key
    elif case == "wrong order":
        other_root, _ = user_root(NOW, "Other")
        chain, key = [inter, other_root], inter_key
    else:
        csr_key, csr = make_csr()
        assert isinstance(csr_key, ec.EllipticCurvePrivateKey)
        leaf = Authority.intermediate([inter, root], inter_key, NOW).issue(csr, REVIEWS, DAY, NOW)
        chain, key = [leaf, inter, root], csr_key
    with pytest.raises(CaSetupError, match=message):
        Authority.intermediate(chain, key, NOW)


def test_spiffe_ids_parse_and_print() -> None:
    assert str(REVIEWS) == "spiffe://trellis.local/ns/shop/sa/reviews"
    assert SpiffeId.parse(str(REVIEWS)) == REVIEWS
    for bad in ("spiffe://td/ns/a", "https://td/ns/a/sa/b", "spiffe://td/ns/a/sa/b/c"):
        with pytest.raises(ValueError, match="not a workload SPIFFE ID"):
            SpiffeId.parse(bad)
    with pytest.raises(ValueError, match="not a valid service account"):
        SpiffeId("td", "ns", "a/b")
