"""Registry endpoints: a workload registers with a TTL lease, heartbeats it, and deregisters.

Maps HTTP onto the Registry; the workload document is validated by the mesh
model first, so a bad registration is a 422 like any other write.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from trellis.control.api import schemas
from trellis.control.api.deps import Admin, State
from trellis.control.api.writes import RawDocument, parse_all
from trellis.control.registry import UnknownWorkload
from trellis.model import Workload
from trellis.model.keys import ResourceKey

router = APIRouter(prefix="/api/v1/registry", dependencies=[Admin])


@router.post("/register", response_model=schemas.RevisionOut)
async def register(state: State, body: schemas.RegisterRequest) -> schemas.RevisionOut:
    (doc,) = parse_all([RawDocument(body.workload, 0)])
    if not isinstance(doc, Workload):
        raise HTTPException(400, f"only a Workload can register, not a {doc.kind}")
    result = await state.registry.register(doc, body.ttl_seconds)
    return schemas.RevisionOut(revision=result.revision)


@router.post("/heartbeat", response_model=schemas.HeartbeatOut)
async def heartbeat(state: State, body: schemas.HeartbeatRequest) -> schemas.HeartbeatOut:
    key = ResourceKey("Workload", body.namespace, body.name)
    try:
        lease = await state.registry.heartbeat(key, healthy=body.healthy)
    except UnknownWorkload:
        raise HTTPException(
            404, f"unknown workload {body.namespace}/{body.name}: register again"
        ) from None
    return schemas.HeartbeatOut(expires_at=lease.expires_at)


@router.post("/deregister", response_model=schemas.DeregisterOut)
async def deregister(state: State, body: schemas.WorkloadRef) -> schemas.DeregisterOut:
    key = ResourceKey("Workload", body.namespace, body.name)
    result = await state.registry.deregister(key)
    action = result.changes[0].action if result.changes else "absent"
    return schemas.DeregisterOut(revision=result.revision, action=action)
