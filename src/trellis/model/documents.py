"""The kinds of mesh resource, and turning a plain dict into a validated document."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from trellis.model.base import API_VERSION, Document
from trellis.model.errors import DocumentError, FieldError, describe_value
from trellis.model.mesh_config import MeshConfig
from trellis.model.policies import AuthorizationPolicy, DestinationPolicy, RateLimitPolicy
from trellis.model.routes import GRPCRoute, HTTPRoute
from trellis.model.service import Service
from trellis.model.workload import Workload

AnyDocument = (
    Service
    | Workload
    | HTTPRoute
    | GRPCRoute
    | DestinationPolicy
    | AuthorizationPolicy
    | RateLimitPolicy
    | MeshConfig
)

KINDS: dict[str, type[Document]] = {
    cls.KIND: cls
    for cls in (
        Service,
        Workload,
        HTTPRoute,
        GRPCRoute,
        DestinationPolicy,
        AuthorizationPolicy,
        RateLimitPolicy,
        MeshConfig,
    )
}


def _english_plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


# REST paths and CLI arguments use the plural, lower-case form (`destinationpolicies`).
PLURALS: dict[str, str] = {_english_plural(kind): kind for kind in KINDS}
ALIASES: dict[str, str] = {
    **{kind.lower(): kind for kind in KINDS},
    **PLURALS,
    "svc": "Service",
    "wl": "Workload",
    "route": "HTTPRoute",
    "routes": "HTTPRoute",
    "dp": "DestinationPolicy",
    "authz": "AuthorizationPolicy",
    "rlp": "RateLimitPolicy",
}


def plural(kind: str) -> str:
    return next(p for p, k in PLURALS.items() if k == kind)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _describe(raw: Any, index: int | None) -> str:
    if isinstance(raw, dict):
        kind = raw.get("kind")
        meta = raw.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        ns = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
        if isinstance(kind, str) and kind and isinstance(name, str) and name:
            if kind == "MeshConfig":
                return f"{kind} {name}"
            return f"{kind} {ns if isinstance(ns, str) else '?'}/{name}"
    return f"document {index + 1}" if index is not None else "document"


# pydantic's type errors (strict: no coercion) -> what the field takes, in YAML/JSON words.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "a boolean (true or false)",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def field_errors(err: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[FieldError]:
    """pydantic's errors as field paths in the YAML spelling (camelCase aliases)."""
    out = []
    for e in err.errors(include_url=False):
        loc = tuple(
            p for p in (*prefix, *e["loc"]) if not (isinstance(p, str) and "[" in p and "]" in p)
        )
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] in _EXPECTED:
            msg = f"must be {_EXPECTED[e['type']]}, got {describe_value(e['input'])}"
        elif e["type"] in ("literal_error", "enum") and "expected" in e.get("ctx", {}):
            msg = f"must be one of {e['ctx']['expected']}, got {describe_value(e['input'])}"
        out.append(FieldError(_path(loc), msg))
    return out


def parse_document(
    raw: Any, *, index: int | None = None, line: int | None = None, source: str | None = None
) -> Document:
    """Validate one document; raises DocumentError (as `.args[0]`) listing every problem."""
    name = _describe(raw, index)

    def fail(errors: list[FieldError]) -> DocumentError:
        return DocumentError(name, tuple(errors), index=index, line=line, source=source)

    if not isinstance(raw, dict):
        raise InvalidDocument(fail([FieldError("", "a document must be a mapping")]))
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    errors: list[FieldError] = []
    if api_version != API_VERSION:
        got = describe_value(api_version)
        errors.append(FieldError("apiVersion", f"must be {API_VERSION!r}, got {got}"))
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(KINDS)
        reason = (
            f"unknown kind {kind!r}; known kinds: {known}"
            if isinstance(kind, str)
            else f"must be a kind ({known}), got {describe_value(kind)}"
        )
        errors.append(FieldError("kind", reason))
        raise InvalidDocument(fail(errors))
    # Fields the store owns are not the user's to set.
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        raw = {
            **raw,
            "metadata": {
                k: v for k, v in meta.items() if k not in ("resourceVersion", "creationRevision")
            },
        }
    try:
        doc = KINDS[kind].model_validate(raw)
    except ValidationError as e:
        errors.extend(f for f in field_errors(e) if f.path != "apiVersion")  # checked above
    if errors:
        raise InvalidDocument(fail(errors))
    return doc


class InvalidDocument(Exception):
    """One document failed validation; `.error` says where and why."""

    def __init__(self, error: DocumentError) -> None:
        super().__init__(str(error))
        self.error = error


__all__ = [
    "ALIASES",
    "KINDS",
    "PLURALS",
    "AnyDocument",
    "Document",
    "InvalidDocument",
    "parse_document",
    "plural",
]
