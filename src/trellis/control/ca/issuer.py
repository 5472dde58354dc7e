"""The live CA: who may get which certificate, join tokens, rotation, what was issued.

`CertificateAuthority` is what the gRPC service and the REST API call. Policy:
- First issuance needs a join token `ID.SECRET`: unknown ID or wrong secret is
  `Unauthenticated`; a revoked or expired token is `PermissionDenied`.
- Renewal needs no token: the caller presents its current mesh certificate over
  TLS; its serial must be one this CA issued (`Unauthenticated` otherwise) and the
  token it descends from must not be revoked (`PermissionDenied`). A token's
  expiry only limits joining: certificates it issued keep renewing until it is
  revoked.
- The identity is the token's (first issuance) or the presented certificate's
  (renewal), never anything the request or the CSR names. A request may state
  the identity it expects (`serviceAccount`, `namespace`): a mismatch is
  `PermissionDenied`, never a certificate for another service account.
- The trust domain and the TTL come from MeshConfig at signing time.
Every issued serial is recorded with its token and lineage (db.py).

Changes to the signing state (rotation) are saved to disk before they are
used, then announced to subscribers (the serving certificate). Knows nothing
of gRPC or HTTP: refusals are `Refused` subclasses that the transports map.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trellis.control.ca import pki
from trellis.control.ca.authority import Authority
from trellis.control.ca.db import CaDb, CertificateRecord
from trellis.control.ca.files import CaFiles
from trellis.control.ca.peers import PeerCertificate
from trellis.control.ca.tokens import TokenRecord, digest, new_token, split
from trellis.wire import SpiffeId

log = logging.getLogger("trellis.ca")


class Refused(Exception):
    """The CA refuses the request; `str()` says why."""


class Unauthenticated(Refused):
    """No credential, or one the CA does not know."""


class PermissionDenied(Refused):
    """A known credential that does not allow this."""


class InvalidArgument(Refused):
    """The request itself is malformed (bad CSR, bad names)."""


@dataclass(frozen=True, slots=True)
class MeshSettings:
    trust_domain: str = "trellis.local"
    certificate_ttl: dt.timedelta = dt.timedelta(hours=24)


SettingsFn = Callable[[], Awaitable[MeshSettings]]


@dataclass(frozen=True, slots=True)
class SignRequest:
    csr: str
    token: str | None = None
    service_account: str | None = None  # what the caller expects to get (optional)
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    chain_pem: bytes  # the SVID, then its intermediates
    bundle_pem: bytes
    not_after: dt.datetime
    spiffe_id: SpiffeId
    serial: str


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # ID.SECRET: shown once
    record: TokenRecord


async def _default_settings() -> MeshSettings:
    return MeshSettings()


class CertificateAuthority:
    def __init__(
        self,
        authority: Authority,
        files: CaFiles,
        db: CaDb,
        settings: SettingsFn = _default_settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authority = authority
        self._files = files
        self._db = db
        self._settings = settings
        self._clock = clock
        self._subscribers: list[Callable[[Authority], None]] = []
        self._stats = {"issued": 0, "renewed": 0, "refused": 0}

    @property
    def authority(self) -> Authority:
        return self._authority

    def bundle_pem(self) -> bytes:
        return self._authority.bundle_pem()

    def subscribe(self, callback: Callable[[Authority], None]) -> None:
        """Call `callback(authority)` after every change of the signing state."""
        self._subscribers.append(callback)

    def statistics(self) -> dict[str, int]:
        return dict(self._stats)

    async def settings(self) -> MeshSettings:
        return await self._settings()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    # -- join tokens ----------------------------------------------------------------------

    def create_token(self, service_account: str, namespace: str, ttl_seconds: float) -> NewToken:
        try:
            SpiffeId("x", namespace, service_account)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        if ttl_seconds <= 0:
            raise InvalidArgument("a token's TTL must be positive")
        token_id, token = new_token()
        now = self._clock()
        record = TokenRecord(
            id=token_id,
            sha256=digest(split(token)[1]),
            service_account=service_account,
            namespace=namespace,
            created=now,
            expires=now + ttl_seconds,
        )
        self._db.add_token(record)
        log.info("join token %s created for %s/%s", token_id, namespace, service_account)
        return NewToken(token, record)

    def tokens(self) -> list[TokenRecord]:
        return self._db.tokens()

    def revoke_token(self, token_id: str) -> TokenRecord | None:
        record = self._db.revoke_token(token_id, self._clock())
        if record is not None:
            log.info("join token %s revoked: its certificates will not renew", token_id)
        return record

    def certificates_of_token(self, token_id: str) -> int:
        return self._db.issued_by_token(token_id, self._clock())

    # -- issuing --------------------------------------------------------------------------

    async def sign(self, request: SignRequest, presented: PeerCertificate | None) -> Issued:
        """Issue an SVID for the request's CSR; raises a `Refused` subclass."""
        try:
            return await self._sign(request, presented)
        except Refused as e:
            self._stats["refused"] += 1
            log.info("CA refused a %s: %s", "join" if request.token else "renewal", e)
            raise

    async def _sign(self, request: SignRequest, presented: PeerCertificate | None) -> Issued:
        if request.token:
            token = self._check_token(request.token)
            lineage: str | None = None
        else:
            token, lineage = self._check_renewal(presented)
        namespace, service_account = token.namespace, token.service_account
        if lineage is not None:
            assert presented is not None
            spiffe = presented.spiffe_id()  # checked by _check_renewal
            namespace, service_account = spiffe.namespace, spiffe.service_account
        wanted = (request.namespace or namespace, request.service_account or service_account)
        if wanted != (namespace, service_account):
            raise PermissionDenied(
                f"this credential is scoped to service account {namespace}/{service_account}, "
                f"not {wanted[0]}/{wanted[1]}"
            )
        settings = await self._settings()
        try:
            spiffe_id = SpiffeId(settings.trust_domain, namespace, service_account)
            leaf = self._authority.issue(
                request.csr, spiffe_id, settings.certificate_ttl, self._now()
            )
        except pki.BadInput as e:
            raise InvalidArgument(str(e)) from None
        serial = pki.serial_hex(leaf)
        self._db.add_certificate(
            CertificateRecord(
                serial=serial,
                spiffe_id=str(spiffe_id),
                namespace=namespace,
                service_account=service_account,
                token_id=token.id,
                lineage=lineage or serial,
                not_before=leaf.not_valid_before_utc.timestamp(),
                not_after=pki.not_after(leaf).timestamp(),
                issued=self._clock(),
            )
        )
        self._stats["renewed" if lineage else "issued"] += 1
        log.info(
            "CA %s %s serial %s until %s (token %s)",
            "renewed" if lineage else "issued",
            spiffe_id,
            serial,
            pki.not_after(leaf).isoformat(),
            token.id,
        )
        return Issued(
            chain_pem=self._authority.chain_pem(leaf),
            bundle_pem=self._authority.bundle_pem(),
            not_after=pki.not_after(leaf),
            spiffe_id=spiffe_id,
            serial=serial,
        )

    def _check_token(self, token: str) -> TokenRecord:
        try:
            token_id, secret = split(token)
        except ValueError as e:
            raise Unauthenticated(f"invalid join token: {e}") from None
        record = self._db.token(token_id)
        if record is None or not record.matches(secret):
            raise Unauthenticated("invalid join token")
        if record.revoked:
            raise PermissionDenied(f"join token {token_id} was revoked")
        if record.expired(self._clock()):
            raise PermissionDenied(
                f"join token {token_id} expired at "
                f"{dt.datetime.fromtimestamp(record.expires, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
            )
        return record

    def _check_renewal(self, presented: PeerCertificate | None) -> tuple[TokenRecord, str]:
        if presented is None:
            raise Unauthenticated(
                "no join token and no client certificate: the first certificate needs a join "
                "token (`trellis token create`), a renewal the current mesh certificate over TLS"
            )
        try:
            presented.spiffe_id()
        except ValueError as e:
            raise Unauthenticated(f"the client certificate is not a mesh SVID: {e}") from None
        record = self._db.certificate(presented.serial)
        if record is None:
            raise Unauthenticated(
                f"the client certificate (serial {presented.serial}) was not issued by this CA"
            )
        token = self._db.token(record.token_id)
        if token is None or token.revoked:
            raise PermissionDenied(
                f"renewal refused: join token {record.token_id}, which issued this certificate, "
                "was revoked; join again with a new token"
            )
        return token, record.lineage

    # -- what was issued ------------------------------------------------------------------

    def current_certificates(
        self, namespace: str | None = None, service_account: str | None = None
    ) -> list[CertificateRecord]:
        """The certificate each proxy holds now (newest of each lineage, unexpired)."""
        return self._db.current(self._clock(), namespace, service_account)

    def record_node(self, serial: str, node_id: str) -> None:
        self._db.record_node(serial, node_id)

    # -- rotation -------------------------------------------------------------------------

    def rotate(self) -> Authority:
        """A new root signs from now on; both roots are trusted until `finish_rotation`.

        Raises CaSetupError in intermediate mode."""
        return self._change(self._authority.rotate(self._now()), "rotated: new root")

    def finish_rotation(self) -> Authority:
        if not self._authority.rotating:
            return self._authority
        return self._change(self._authority.finish_rotation(), "rotation finished: trusts only")

    def _change(self, authority: Authority, what: str) -> Authority:
        self._files.save(authority)  # on disk before anything is signed with it
        self._authority = authority
        log.info("CA %s %s", what, authority.root.subject.rfc4514_string())
        for callback in self._subscribers:
            callback(authority)
        return authority
