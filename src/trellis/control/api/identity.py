"""Identity endpoints: join tokens, the CA (bundle, state, rotation), issued certificates.

- `POST /api/v1/tokens` `{serviceAccount, namespace, ttlSeconds}` -> `{id, token, expires, ...}`
  (the secret only in this answer); `GET /api/v1/tokens`; `DELETE /api/v1/tokens/{id}`
  (revoke). All need the admin token.
- `GET /api/v1/ca/bundle`: the trusted roots as PEM (public).
- `GET /api/v1/ca`: mode, trust domain, certificate TTL, signing certificate, roots.
- `POST /api/v1/ca/rotate` `{finish}` (admin): start or finish a root rotation.
- `GET /api/v1/identities?namespace=&serviceAccount=`: the current certificate of every
  proxy (newest of each renewal lineage, unexpired).
- `GET /api/v1/identities/{workload}?namespace=`: a workload's SPIFFE ID and the current
  certificates of its service account.
Maps HTTP onto the CA (`state.ca`); 503 when this API runs without one.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from cryptography import x509
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import PlainTextResponse

from trellis.control.api import schemas
from trellis.control.api.deps import Admin, State
from trellis.control.api.state import ApiState, CaPort
from trellis.control.ca import pki
from trellis.control.ca.authority import CaSetupError
from trellis.control.ca.db import CertificateRecord
from trellis.control.ca.issuer import InvalidArgument
from trellis.control.ca.tokens import TokenRecord
from trellis.model import Workload
from trellis.model.keys import ResourceKey
from trellis.wire import SpiffeId

tokens_router = APIRouter(prefix="/api/v1/tokens", dependencies=[Admin])
ca_router = APIRouter(prefix="/api/v1/ca")
identities_router = APIRouter(prefix="/api/v1/identities")

PEM_MEDIA_TYPE = "application/x-pem-file"


def rfc3339(when: float | dt.datetime) -> str:
    if not isinstance(when, dt.datetime):
        when = dt.datetime.fromtimestamp(when, dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ca(state: ApiState) -> CaPort:
    if state.ca is None:
        raise HTTPException(503, "this control plane runs without a CA")
    return state.ca


def _token_out(ca: CaPort, t: TokenRecord, now: float) -> schemas.TokenOut:
    return schemas.TokenOut(
        id=t.id,
        service_account=t.service_account,
        namespace=t.namespace,
        created=rfc3339(t.created),
        expires=rfc3339(t.expires),
        expired=t.expired(now),
        revoked=t.revoked,
        revoked_at=rfc3339(t.revoked_at) if t.revoked_at is not None else None,
        certificates=ca.certificates_of_token(t.id),
    )


def _issued_out(c: CertificateRecord) -> schemas.IssuedOut:
    return schemas.IssuedOut(
        serial=c.serial,
        spiffe_id=c.spiffe_id,
        namespace=c.namespace,
        service_account=c.service_account,
        token_id=c.token_id,
        not_before=rfc3339(c.not_before),
        not_after=rfc3339(c.not_after),
        node=c.node,
    )


def _cert_info(cert: x509.Certificate) -> schemas.CertificateInfo:
    return schemas.CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        serial=pki.serial_hex(cert),
        not_before=rfc3339(cert.not_valid_before_utc),
        not_after=rfc3339(pki.not_after(cert)),
        fingerprint=pki.fingerprint(cert),
    )


# -- join tokens ----------------------------------------------------------------------------


@tokens_router.post("", response_model=schemas.TokenCreated, status_code=201)
async def create_token(state: State, body: schemas.TokenCreate) -> schemas.TokenCreated:
    ca = _ca(state)
    try:
        created = ca.create_token(body.service_account, body.namespace, body.ttl_seconds)
    except InvalidArgument as e:
        raise HTTPException(422, str(e)) from None
    record = created.record
    return schemas.TokenCreated(
        id=record.id,
        token=created.token,
        expires=rfc3339(record.expires),
        service_account=record.service_account,
        namespace=record.namespace,
    )


@tokens_router.get("", response_model=schemas.TokenList)
async def list_tokens(state: State) -> schemas.TokenList:
    ca = _ca(state)
    now = dt.datetime.now(dt.UTC).timestamp()
    return schemas.TokenList(items=[_token_out(ca, t, now) for t in ca.tokens()])


@tokens_router.delete("/{token_id}", response_model=schemas.TokenOut)
async def revoke_token(state: State, token_id: str) -> schemas.TokenOut:
    ca = _ca(state)
    record = ca.revoke_token(token_id)
    if record is None:
        raise HTTPException(404, f"join token {token_id} not found")
    return _token_out(ca, record, dt.datetime.now(dt.UTC).timestamp())


# -- the CA ---------------------------------------------------------------------------------


@ca_router.get(
    "/bundle",
    response_class=PlainTextResponse,
    responses={200: {"content": {PEM_MEDIA_TYPE: {}}, "description": "the trusted roots (PEM)"}},
)
async def bundle(state: State) -> Response:
    return Response(_ca(state).bundle_pem(), media_type=PEM_MEDIA_TYPE)


async def _ca_out(state: ApiState) -> schemas.CaOut:
    ca = _ca(state)
    authority = ca.authority
    settings = await ca.settings()
    return schemas.CaOut(
        mode="self-signed" if authority.self_signed else "intermediate",
        trust_domain=settings.trust_domain,
        certificate_ttl_seconds=settings.certificate_ttl.total_seconds(),
        signing=_cert_info(authority.cert),
        roots=[_cert_info(r) for r in authority.roots],
        rotating=authority.rotating,
        secure=state.secure_address,
    )


@ca_router.get("", response_model=schemas.CaOut)
async def ca_info(state: State) -> schemas.CaOut:
    return await _ca_out(state)


@ca_router.post("/rotate", response_model=schemas.CaOut, dependencies=[Admin])
async def rotate(state: State, body: schemas.RotateRequest) -> schemas.CaOut:
    ca = _ca(state)
    try:
        ca.finish_rotation() if body.finish else ca.rotate()
    except CaSetupError as e:
        raise HTTPException(409, str(e)) from None
    return await _ca_out(state)


# -- issued certificates --------------------------------------------------------------------


@identities_router.get("", response_model=schemas.IssuedList)
async def list_identities(
    state: State,
    namespace: str | None = None,
    service_account: Annotated[str | None, Query(alias="serviceAccount")] = None,
) -> schemas.IssuedList:
    certs = _ca(state).current_certificates(namespace, service_account)
    return schemas.IssuedList(items=[_issued_out(c) for c in certs])


@identities_router.get("/{workload}", response_model=schemas.IdentityOut)
async def workload_identity(
    state: State, workload: str, namespace: str = "default"
) -> schemas.IdentityOut:
    ca = _ca(state)
    doc = await state.store.get(ResourceKey("Workload", namespace, workload))
    if not isinstance(doc, Workload):
        raise HTTPException(404, f"Workload {namespace}/{workload} not found")
    settings = await ca.settings()
    service_account = doc.service_account
    spiffe_id = SpiffeId(settings.trust_domain, namespace, service_account)
    certs = ca.current_certificates(namespace, service_account)
    return schemas.IdentityOut(
        workload=workload,
        namespace=namespace,
        service_account=service_account,
        spiffe_id=str(spiffe_id),
        certificates=[_issued_out(c) for c in certs],
    )
