"""Validated writes: every write is checked against the world it would create, then stored.

Owns the write protocol the API promises: parse → check references against
the snapshot with the ops applied → `store.apply(expect_revision=...)`,
retried on `Conflict`. Knows nothing about HTTP; `Rejected` carries the
problems, and the store is untouched when it is raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trellis.model import (
    KINDS,
    Document,
    DocumentError,
    FieldError,
    InvalidDocument,
    parse_document,
)
from trellis.model.keys import ResourceKey
from trellis.model.references import check_references, key_of
from trellis.store.base import ApplyResult, Conflict, Delete, Op, Put, Snapshot, Store

MAX_ATTEMPTS = 10


class Rejected(Exception):
    """The write is invalid as a whole; `problems` names every document and field."""

    def __init__(self, problems: Sequence[DocumentError]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One document as a client sent it, with where it came from (for error messages)."""

    raw: Any
    index: int
    source: str | None = None


def parse_all(items: Iterable[RawDocument]) -> list[Document]:
    """Parse every document; raise Rejected listing all bad ones (and duplicate keys)."""
    docs: list[Document] = []
    problems: list[DocumentError] = []
    seen: dict[ResourceKey, int] = {}
    for item in items:
        try:
            doc = parse_document(item.raw, index=item.index, source=item.source)
        except InvalidDocument as bad:
            problems.append(bad.error)
            continue
        key = key_of(doc)
        if key in seen:
            reason = f"{key} also appears as document {seen[key] + 1}"
            problems.append(
                DocumentError(
                    str(key),
                    (FieldError("metadata.name", reason),),
                    index=item.index,
                    source=item.source,
                )
            )
        seen[key] = item.index
        docs.append(doc)
    if problems:
        raise Rejected(problems)
    return docs


def world_after(snapshot: Snapshot, ops: Iterable[Op]) -> dict[ResourceKey, Document]:
    """Every document as it would be once `ops` are applied to `snapshot`."""
    world = {key_of(d): d for d in snapshot.docs}
    for op in ops:
        if isinstance(op, Put):
            world[key_of(op.doc)] = op.doc
        elif isinstance(op, Delete):
            world.pop(op.key, None)
    return world


def reference_problems(
    world: Mapping[ResourceKey, Document],
    written: Sequence[Document],
    positions: Mapping[ResourceKey, RawDocument] | None = None,
) -> list[DocumentError]:
    """`check_references` for the written documents, with each one's index and source."""
    problems = check_references(world, [key_of(d) for d in written])
    if not positions:
        return problems
    out = []
    for p in problems:
        where = next((pos for key, pos in positions.items() if str(key) == p.document), None)
        if where is None:
            out.append(p)
        else:
            out.append(DocumentError(p.document, p.errors, index=where.index, source=where.source))
    return out


async def put_documents(
    store: Store,
    docs: Sequence[Document],
    *,
    dry_run: bool,
    positions: Mapping[ResourceKey, RawDocument] | None = None,
) -> ApplyResult:
    """Create or replace `docs` atomically, after checking references."""
    ops: list[Op] = [Put(d) for d in docs]
    for _ in range(MAX_ATTEMPTS):
        snapshot = await store.snapshot()
        problems = reference_problems(world_after(snapshot, ops), docs, positions)
        if problems:
            raise Rejected(problems)
        try:
            return await store.apply(ops, expect_revision=snapshot.revision, dry_run=dry_run)
        except Conflict:
            continue
    raise Conflict(f"the store kept changing; gave up after {MAX_ATTEMPTS} attempts")


async def delete_keys(store: Store, keys: Sequence[ResourceKey], *, dry_run: bool) -> ApplyResult:
    """Delete `keys` atomically. Deleting what others reference is allowed (as in Kubernetes)."""
    return await store.apply([Delete(k) for k in keys], dry_run=dry_run)


def keys_from_raw(items: Iterable[RawDocument]) -> list[ResourceKey]:
    """The keys a delete request names (only `kind` and `metadata` matter); Rejected if unusable."""
    keys: list[ResourceKey] = []
    problems: list[DocumentError] = []
    for item in items:
        found = _key_of_raw(item)
        if isinstance(found, DocumentError):
            problems.append(found)
        else:
            keys.append(found)
    if problems:
        raise Rejected(problems)
    return keys


def _key_of_raw(item: RawDocument) -> ResourceKey | DocumentError:
    raw = item.raw
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    errors: list[FieldError] = []
    if not isinstance(kind, str) or kind not in KINDS:  # a list or a mapping is unhashable
        errors.append(FieldError("kind", f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}"))
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        errors.append(FieldError("metadata.name", "required"))
    namespace = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
    if not isinstance(namespace, str):
        errors.append(FieldError("metadata.namespace", "must be a string"))
    if errors:
        return DocumentError(
            f"document {item.index + 1}", tuple(errors), index=item.index, source=item.source
        )
    assert isinstance(kind, str) and isinstance(name, str) and isinstance(namespace, str)
    return ResourceKey(kind, "" if KINDS[kind].CLUSTER_SCOPED else namespace, name)
