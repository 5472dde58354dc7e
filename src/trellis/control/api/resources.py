"""Resource endpoints: list, get, create-or-replace, delete, and multi-document apply/delete.

Every write goes through `writes` (validation against the would-be world,
then one atomic store apply); this module only maps HTTP to those calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from trellis.control.api import schemas
from trellis.control.api.deps import Admin, State
from trellis.control.api.writes import (
    RawDocument,
    delete_keys,
    keys_from_raw,
    parse_all,
    put_documents,
)
from trellis.model import KINDS, PLURALS
from trellis.model.keys import ResourceKey
from trellis.model.references import key_of
from trellis.store.base import ApplyResult

router = APIRouter(prefix="/api/v1")

Namespace = Annotated[str, Query(description="namespace (ignored for cluster-scoped kinds)")]
DryRun = Annotated[bool, Query(alias="dryRun", description="validate and report, store nothing")]


def kind_of(plural: str) -> str:
    kind = PLURALS.get(plural)
    if kind is None:
        known = ", ".join(sorted(PLURALS))
        raise HTTPException(404, f"unknown resource type {plural!r}; known: {known}")
    return kind


def key_for(kind: str, namespace: str, name: str) -> ResourceKey:
    return ResourceKey(kind, "" if KINDS[kind].CLUSTER_SCOPED else namespace, name)


def write_result(result: ApplyResult, dry_run: bool) -> schemas.WriteResult:
    changes = [
        schemas.ChangeOut(
            key=str(c.key),
            kind=c.key.kind,
            namespace=c.key.namespace,
            name=c.key.name,
            action=c.action,
        )
        for c in result.changes
    ]
    return schemas.WriteResult(revision=result.revision, changes=changes, dry_run=dry_run)


@router.get("/{plural}", response_model=schemas.ItemList)
async def list_resources(
    state: State, plural: str, namespace: str | None = None
) -> schemas.ItemList:
    kind = kind_of(plural)
    snapshot = await state.store.snapshot()
    items = [
        d.to_dict()
        for d in snapshot.docs
        if d.kind == kind and (namespace is None or d.CLUSTER_SCOPED or d.namespace == namespace)
    ]
    return schemas.ItemList(items=items, revision=snapshot.revision)


@router.get("/{plural}/{name}", response_model=dict[str, Any])
async def get_resource(
    state: State, plural: str, name: str, namespace: Namespace = "default"
) -> Any:
    kind = kind_of(plural)
    doc = await state.store.get(key_for(kind, namespace, name))
    if doc is None:
        raise HTTPException(404, f"{key_for(kind, namespace, name)} not found")
    return doc.to_dict()


@router.put("/{plural}/{name}", response_model=schemas.WriteResult, dependencies=[Admin])
async def put_resource(
    state: State,
    plural: str,
    name: str,
    document: Annotated[dict[str, Any], Body(description="one mesh document")],
    namespace: Namespace = "default",
    dry_run: DryRun = False,
) -> schemas.WriteResult:
    kind = kind_of(plural)
    raw = dict(document)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and "namespace" not in meta and not KINDS[kind].CLUSTER_SCOPED:
        raw["metadata"] = {**meta, "namespace": namespace}
    (doc,) = parse_all([RawDocument(raw, 0)])
    expected = key_for(kind, namespace, name)
    if key_of(doc) != expected:
        raise HTTPException(400, f"the body is {key_of(doc)} but the path names {expected}")
    result = await put_documents(state.store, [doc], dry_run=dry_run)
    return write_result(result, dry_run)


@router.delete("/{plural}/{name}", response_model=schemas.WriteResult, dependencies=[Admin])
async def delete_resource(
    state: State, plural: str, name: str, namespace: Namespace = "default", dry_run: DryRun = False
) -> schemas.WriteResult:
    key = key_for(kind_of(plural), namespace, name)
    if await state.store.get(key) is None:
        raise HTTPException(404, f"{key} not found")
    result = await delete_keys(state.store, [key], dry_run=dry_run)
    if any(c.action == "absent" for c in result.changes):
        raise HTTPException(404, f"{key} not found")
    return write_result(result, dry_run)


@router.post("/apply", response_model=schemas.WriteResult, dependencies=[Admin])
async def apply_documents(
    state: State, body: schemas.ApplyRequest, dry_run: DryRun = False
) -> schemas.WriteResult:
    items = [RawDocument(raw, i, body.source) for i, raw in enumerate(body.documents)]
    docs = parse_all(items)
    positions = {key_of(d): item for d, item in zip(docs, items, strict=True)}
    result = await put_documents(state.store, docs, dry_run=dry_run, positions=positions)
    return write_result(result, dry_run)


@router.post("/delete", response_model=schemas.WriteResult, dependencies=[Admin])
async def delete_documents(
    state: State, body: schemas.DeleteRequest, dry_run: DryRun = False
) -> schemas.WriteResult:
    keys = keys_from_raw(RawDocument(raw, i) for i, raw in enumerate(body.documents))
    result = await delete_keys(state.store, keys, dry_run=dry_run)
    return write_result(result, dry_run)
