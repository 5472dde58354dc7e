"""The CA's files: made on first start (keys 0600), reloaded on restart; user intermediates."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from tests.control.ca.ca_support import make_csr, user_intermediate, user_root

from trellis.control.ca import pki
from trellis.control.ca.authority import CaSetupError
from trellis.control.ca.files import (
    BUNDLE,
    CA_CERT,
    CA_KEY,
    CROSS_CERT,
    ROOT_CERT,
    SERVING_KEY,
    CaFiles,
    open_authority,
)
from trellis.control.ca.serving import ServingCertificate, names_for
from trellis.wire import SpiffeId

NOW = pki.utcnow()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_user_ca(tmp: Path, name: str = "Example Corp Root") -> tuple[Path, Path, Path]:
    """(--ca-cert: intermediate + root, --ca-key, the root alone)."""
    root, root_key = user_root(NOW, name)
    inter, inter_key = user_intermediate(root, root_key, NOW)
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key, root_file = tmp / "ca-chain.pem", tmp / "ca-key.pem", tmp / "root.pem"
    cert.write_bytes(pki.cert_pem(inter, root))
    key.write_bytes(pki.key_pem(inter_key))
    root_file.write_bytes(pki.cert_pem(root))
    return cert, key, root_file


def test_first_start_writes_the_files_with_private_keys_0600(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    authority, note = open_authority(files, None, None, NOW)
    assert note.startswith("CA: new self-signed root")
    assert mode(files.directory) == 0o700
    assert mode(files.path(CA_KEY)) == 0o600
    for name in (ROOT_CERT, CA_CERT, BUNDLE):
        assert files.path(name).exists()
    assert pki.load_certs(files.path(BUNDLE).read_bytes())[0] == authority.root
    assert pki.load_certs(files.path(CA_CERT).read_bytes()) == [authority.cert]
    ServingCertificate(files, names_for("127.0.0.1")).refresh(authority)
    assert mode(files.path(SERVING_KEY)) == 0o600


def test_restart_loads_the_same_ca(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    first, _ = open_authority(files, None, None, NOW)
    again, note = open_authority(files, None, None, NOW)
    assert note.startswith("CA: self-signed")
    assert again.cert == first.cert and again.roots == first.roots
    assert pki.same_key(again.cert, again.key)


def test_rotation_state_survives_a_restart(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    first, _ = open_authority(files, None, None, NOW)
    files.save(first.rotate(NOW))
    assert files.path(CROSS_CERT).exists()
    reloaded = files.load()
    assert reloaded.rotating and reloaded.cross is not None
    assert reloaded.roots[1] == first.root
    files.save(reloaded.finish_rotation())
    assert not files.path(CROSS_CERT).exists()
    assert not files.load().rotating


def test_intermediate_mode_from_user_files_and_kept_on_restart(tmp_path: Path) -> None:
    cert, key, root_file = write_user_ca(tmp_path / "user")
    files = CaFiles(tmp_path / "data" / "ca")
    authority, note = open_authority(files, cert, key, NOW)
    assert "new intermediate" in note and authority.mode == "intermediate"
    assert mode(files.path(CA_KEY)) == 0o600
    assert files.path(ROOT_CERT).read_bytes() == root_file.read_bytes()
    _, csr = make_csr()
    chain_pem, _ = authority.sign_csr(
        csr, SpiffeId("trellis.local", "default", "a"), dt.timedelta(hours=1)
    )
    chain = pki.load_certs(chain_pem)
    assert pki.verify_svid(chain, pki.load_certs(root_file.read_bytes()), pki.utcnow())
    # A restart without the flags keeps the intermediate; with the same flags nothing changes.
    assert open_authority(files, None, None, NOW)[0].mode == "intermediate"
    assert open_authority(files, cert, key, NOW)[0].cert == authority.cert


def test_switching_to_a_user_intermediate_keeps_the_old_root_trusted(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    self_signed, _ = open_authority(files, None, None, NOW)
    cert, key, _ = write_user_ca(tmp_path / "user")
    adopted, note = open_authority(files, cert, key, NOW)
    assert "previous roots stay trusted" in note
    assert adopted.roots[1] == self_signed.root
    assert files.load().roots == adopted.roots


def test_bad_user_files_and_damaged_state_are_clear_errors(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    with pytest.raises(CaSetupError, match="go together"):
        open_authority(files, tmp_path / "x.pem", None, NOW)
    with pytest.raises(CaSetupError, match="cannot read --ca-cert"):
        open_authority(files, tmp_path / "missing.pem", tmp_path / "missing-key.pem", NOW)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem")
    with pytest.raises(CaSetupError, match="--ca-cert"):
        open_authority(files, garbage, garbage, NOW)
    open_authority(files, None, None, NOW)
    files.path(CA_KEY).write_bytes(pki.key_pem(pki.new_key()))
    with pytest.raises(CaSetupError, match="is not the key of"):
        open_authority(files, None, None, NOW)
