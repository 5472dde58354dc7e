"""Mesh resources: schemas, parsing and validation. Pure: no I/O, no store.

`KINDS` maps each kind name to its document class; `load_documents` turns YAML
text into validated documents; `check_references` validates a whole world of
documents against each other (a route to an unknown service, ...).
"""

from trellis.model.documents import (
    ALIASES,
    KINDS,
    PLURALS,
    AnyDocument,
    Document,
    InvalidDocument,
    parse_document,
    plural,
)
from trellis.model.errors import DocumentError, FieldError, InvalidDocuments
from trellis.model.keys import ResourceKey
from trellis.model.mesh_config import MeshConfig
from trellis.model.policies import AuthorizationPolicy, DestinationPolicy, RateLimitPolicy
from trellis.model.routes import GRPCRoute, HTTPRoute
from trellis.model.service import Service
from trellis.model.workload import Workload

__all__ = [
    "ALIASES",
    "KINDS",
    "PLURALS",
    "AnyDocument",
    "AuthorizationPolicy",
    "DestinationPolicy",
    "Document",
    "DocumentError",
    "FieldError",
    "GRPCRoute",
    "HTTPRoute",
    "InvalidDocument",
    "InvalidDocuments",
    "MeshConfig",
    "RateLimitPolicy",
    "ResourceKey",
    "Service",
    "Workload",
    "parse_document",
    "plural",
]
