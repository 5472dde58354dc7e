"""The control plane's serving certificate: its names, when it is reissued, its TLS settings."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.serving import ServingCertificate, ServingNames, names_for, reissue_reason

NOW = pki.utcnow()


def test_names_cover_localhost_the_listen_address_and_extras() -> None:
    assert names_for("127.0.0.1") == ServingNames(
        frozenset({"localhost", "trellis-control"}), frozenset({"127.0.0.1"})
    )
    assert names_for("0.0.0.0").ips == {"127.0.0.1"}
    assert names_for("::").ips == {"::1"}
    extra = names_for("10.0.0.5", ["cp.example.org", "192.168.1.9", "CP2.example.org"])
    assert extra.dns == {"localhost", "trellis-control", "cp.example.org", "cp2.example.org"}
    assert extra.ips == {"10.0.0.5", "192.168.1.9"}
    assert "control.internal" in names_for("control.internal").dns


def serving_chain(
    authority: Authority, names: ServingNames, lifetime: dt.timedelta
) -> list[x509.Certificate]:
    leaf = authority.issue_serving(
        pki.new_key(), sorted(names.dns), sorted(names.ips), lifetime, NOW
    )
    return [leaf, *authority.intermediates]


def test_reissue_reasons() -> None:
    authority = Authority.create(NOW)
    names = names_for("127.0.0.1")
    fresh = serving_chain(authority, names, dt.timedelta(days=30))
    assert reissue_reason(fresh, authority, names, NOW) is None
    assert reissue_reason(None, authority, names, NOW) == "none yet"
    assert reissue_reason(fresh, authority, names, NOW + dt.timedelta(days=21)) == "it nears expiry"
    assert reissue_reason(fresh, authority, names_for("127.0.0.1", ["x.example"]), NOW) == (
        "its names changed"
    )
    rotated = authority.rotate(NOW)
    assert reissue_reason(fresh, rotated, names, NOW) == "signed by a previous CA"
    during = serving_chain(rotated, names, dt.timedelta(days=30))  # carries the cross cert
    assert reissue_reason(during, rotated.finish_rotation(), names, NOW) == "the CA's chain changed"


def test_refresh_reuses_a_good_certificate_and_reissues_after_rotation(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, None, None, NOW)
    names = names_for("127.0.0.1")
    serving = ServingCertificate(files, names)
    assert serving.refresh(authority) is True
    first = serving.chain[0]
    # A restart (a new object over the same files) keeps it.
    again = ServingCertificate(files, names)
    assert again.refresh(authority) is False and again.chain[0] == first
    rotated = authority.rotate(NOW)
    assert again.refresh(rotated) is True
    assert again.chain[0].issuer == rotated.root.subject
    assert again.chain[1] == rotated.cross
    assert again.not_after is not None
    assert again.not_after - pki.utcnow() <= dt.timedelta(days=30, seconds=5)


def test_tls_settings_forward_secret_aead_and_optional_client_certificates(
    tmp_path: Path,
) -> None:
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, None, None, NOW)
    serving = ServingCertificate(files, names_for("127.0.0.1"))
    serving.refresh(authority)
    context = serving.ssl_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    for cipher in context.get_ciphers():
        if cipher["protocol"] == "TLSv1.2":
            assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]
