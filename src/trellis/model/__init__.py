"""Mesh resources: schemas, parsing and validation. Pure: no I/O, no store.

`KINDS` maps each kind name to its document class; `load_documents` turns YAML
text into validated documents; `check_references` validates a whole world of
documents against each other (a route to an unknown service, ...).
"""

from trellis.model.documents import (
    ALIASES,
    PLURALS,
    InvalidDocument,
    plural,
    KINDS,
    AnyDocument,
    AuthorizationPolicy,
    DestinationPolicy,
    Document,
    GRPCRoute,
    HTTPRoute,
    MeshConfig,
    Service,
    Workload,
    parse_document,
)
from trellis.model.errors import DocumentError, FieldError, InvalidDocuments
from trellis.model.keys import ResourceKey

__all__ = [
    "ALIASES",
    "PLURALS",
    "InvalidDocument",
    "plural",
    "KINDS",
    "AnyDocument",
    "AuthorizationPolicy",
    "DestinationPolicy",
    "Document",
    "DocumentError",
    "FieldError",
    "GRPCRoute",
    "HTTPRoute",
    "InvalidDocuments",
    "MeshConfig",
    "ResourceKey",
    "Service",
    "Workload",
    "parse_document",
]
