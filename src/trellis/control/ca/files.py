"""The CA's files under `DATA_DIR/ca/` (directory 0700, keys 0600), and choosing the CA at start.

```
root-cert.pem     the current root (the mesh's own, or the user's)
ca-cert.pem       the signing certificate; in intermediate mode followed by its issuers
                  up to (not including) the root
ca-key.pem        its key (0600)
bundle.pem        every trusted root, the current one first
cross-cert.pem    during a self-signed rotation: the new root signed by the old one
serving-cert.pem  the control plane's TLS certificate, then its intermediates
serving-key.pem   its key (0600)
```

Each file is replaced atomically (write a temporary file, then rename). A
rotation writes the bundle (a superset of what was trusted) before the new key
and certificate. `load` refuses files that do not fit together (CaSetupError).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority, CaSetupError

ROOT_CERT = "root-cert.pem"
CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
BUNDLE = "bundle.pem"
CROSS_CERT = "cross-cert.pem"
SERVING_CERT = "serving-cert.pem"
SERVING_KEY = "serving-key.pem"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CaFiles:
    """Reads and writes one `ca/` directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / name

    def exists(self) -> bool:
        return self.path(CA_KEY).exists() and self.path(CA_CERT).exists()

    def load(self) -> Authority:
        try:
            key = pki.load_key(self.path(CA_KEY).read_bytes())
            certs = pki.load_certs(self.path(CA_CERT).read_bytes())
            roots = pki.load_certs(self.path(BUNDLE).read_bytes())
            cross_path = self.path(CROSS_CERT)
            cross = pki.load_certs(cross_path.read_bytes())[0] if cross_path.exists() else None
        except (OSError, pki.BadInput) as e:
            raise CaSetupError(f"cannot load the CA from {self.directory}: {e}") from None
        if not pki.same_key(certs[0], key):
            raise CaSetupError(f"{self.path(CA_KEY)} is not the key of {self.path(CA_CERT)}")
        self_signed = len(certs) == 1 and pki.is_self_signed(certs[0])
        if self_signed and pki.fingerprint(certs[0]) != pki.fingerprint(roots[0]):
            raise CaSetupError(f"{self.path(BUNDLE)} does not start with the signing root")
        return Authority(
            key=key,
            cert=certs[0],
            issuers=() if self_signed else tuple(certs),
            roots=tuple(roots),
            cross=cross if len(roots) > 1 else None,
        )

    def save(self, authority: Authority) -> None:
        """Write every file of `authority` (bundle first, key before certificate)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        write_atomic(self.path(BUNDLE), authority.bundle_pem())
        write_atomic(self.path(ROOT_CERT), pki.cert_pem(authority.root))
        if authority.cross is not None:
            write_atomic(self.path(CROSS_CERT), pki.cert_pem(authority.cross))
        write_atomic(self.path(CA_KEY), pki.key_pem(authority.key), 0o600)
        signing = authority.issuers if not authority.self_signed else (authority.cert,)
        write_atomic(self.path(CA_CERT), pki.cert_pem(*signing))
        if authority.cross is None:
            self.path(CROSS_CERT).unlink(missing_ok=True)

    def load_serving(self) -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey] | None:
        """The stored serving certificate chain and key, or None when missing or unreadable."""
        try:
            chain = pki.load_certs(self.path(SERVING_CERT).read_bytes())
            key = pki.load_key(self.path(SERVING_KEY).read_bytes())
        except (OSError, pki.BadInput):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not pki.same_key(chain[0], key):
            return None
        return chain, key

    def save_serving(self, chain_pem: bytes, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path(SERVING_KEY), pki.key_pem(key), 0o600)
        write_atomic(self.path(SERVING_CERT), chain_pem)


def open_authority(
    files: CaFiles, user_cert: Path | None, user_key: Path | None, now: dt.datetime
) -> tuple[Authority, str]:
    """The CA to run with, saved, and a line saying what happened.

    - `--ca-cert/--ca-key` given: the user's intermediate signs. When it differs
      from the stored signing certificate it is adopted; roots trusted so far stay
      in the bundle until `finish_rotation`.
    - else the stored CA (whatever its mode), or on first start a new self-signed root.
    """
    if (user_cert is None) != (user_key is None):
        raise CaSetupError("--ca-cert and --ca-key go together")
    existing = files.load() if files.exists() else None
    if user_cert is not None and user_key is not None:
        try:
            chain = pki.load_certs(_read(user_cert, "--ca-cert"))
            key = pki.load_key(_read(user_key, "--ca-key"))
        except pki.BadInput as e:
            raise CaSetupError(f"--ca-cert {user_cert} / --ca-key {user_key}: {e}") from None
        if existing is not None and pki.fingerprint(existing.cert) == pki.fingerprint(chain[0]):
            return existing, f"CA: intermediate {_subject(existing.cert)}"
        if existing is not None:
            authority = existing.adopt_intermediate(chain, key, now)
        else:
            authority = Authority.intermediate(chain, key, now)
        files.save(authority)
        note = " (previous roots stay trusted until `trellis ca rotate --finish`)"
        return authority, (
            f"CA: new intermediate {_subject(authority.cert)} under {_subject(authority.root)}"
            + (note if authority.rotating else "")
        )
    if existing is not None:
        return existing, f"CA: {existing.mode} {_subject(existing.cert)}"
    authority = Authority.create(now)
    files.save(authority)
    return authority, f"CA: new self-signed root {_subject(authority.root)}"


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CaSetupError(f"cannot read {option} {path}: {e.strerror or e}") from None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()
