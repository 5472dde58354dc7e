"""Read-only views: health, connected nodes' xDS status, and `describe service`."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException

from trellis.control.api import describe, schemas
from trellis.control.api.deps import State
from trellis.control.api.identity import rfc3339
from trellis.model import Service

health_router = APIRouter()
router = APIRouter(prefix="/api/v1")


@health_router.get("/healthz", response_model=schemas.Health)
async def healthz(state: State) -> schemas.Health:
    return schemas.Health(status="ok", revision=await state.store.revision())


@router.get("/info", response_model=schemas.Info)
async def info(state: State) -> schemas.Info:
    return schemas.Info(
        xds=state.xds_address,
        revision=await state.store.revision(),
        secure=state.secure_address or None,
    )


@router.get("/status", response_model=schemas.StatusOut)
async def status(state: State) -> schemas.StatusOut:
    nodes = [n.to_json() for n in state.ads.nodes()]
    # Each node's mesh certificate (bound on the secure port), newest first.
    certificates: dict[str, dict[str, str]] = {}
    if state.ca is not None:
        for c in sorted(state.ca.current_certificates(), key=lambda c: c.not_after):
            if c.node is not None:
                certificates[c.node] = {
                    "spiffeId": c.spiffe_id,
                    "serial": c.serial,
                    "notAfter": rfc3339(c.not_after),
                }
    for node in nodes:
        node["certificate"] = certificates.get(node["id"])
    return schemas.StatusOut(nodes=nodes, revision=await state.store.revision())


@router.get("/describe/services/{name}", response_model=schemas.DescribeService)
async def describe_service(
    state: State, name: str, namespace: str = "default"
) -> schemas.DescribeService:
    snapshot = await state.store.snapshot()
    service = next(
        (
            d
            for d in snapshot.docs
            if isinstance(d, Service) and d.name == name and d.namespace == namespace
        ),
        None,
    )
    if service is None:
        raise HTTPException(404, f"Service {namespace}/{name} not found")
    subscribers: set[str] = set()
    for resource in describe.resource_names(service):
        subscribers.update(state.ads.subscribers(resource))
    return schemas.DescribeService(
        service=service.to_dict(),
        routes=[r.to_dict() for r in describe.attached_routes(snapshot, service)],
        endpoints=[
            schemas.EndpointOut.model_validate(e.to_json())
            for e in describe.endpoints(snapshot, service, time.time())
        ],
        subscribers=sorted(subscribers),
        policy=describe.in_force(snapshot, service),
    )
