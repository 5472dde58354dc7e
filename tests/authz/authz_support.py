"""Helpers for authorization tests: RBAC configs from dicts, requests, engines of a listener.

`request()` builds the view the sidecar's inbound listener would: its path normalized
with the mesh's default options first (trellis.routing.paths; a path the proxy would
refuse raises PathRefused), so a simulated decision is the one the proxy makes.
`tunnel()` is a CONNECT as the inbound listener authorizes it (L4 only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf.json_format import ParseDict
from tests.control.translate.translate_support import node, one

from trellis.authz import Engine, RequestView
from trellis.control.push.context import PushContext
from trellis.control.translate import LISTENER_TYPE
from trellis.routing.paths import DEFAULT_OPTIONS, PathOptions, normalize_target

WEB = "spiffe://trellis.local/ns/web/sa/frontend"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def config(doc: Mapping[str, Any]) -> rbac_pb2.RBAC:
    """An RBAC filter config from its proto-JSON form (field names as in the .proto)."""
    return ParseDict(dict(doc), rbac_pb2.RBAC())


def engine(doc: Mapping[str, Any]) -> Engine:
    return Engine.compile(config(doc))


def policy(
    permissions: list[dict[str, Any]] | None = None,
    principals: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "permissions": permissions or [{"any": True}],
        "principals": principals or [{"any": True}],
    }


def rules(action: str, **policies: dict[str, Any]) -> dict[str, Any]:
    return {"action": action, "policies": policies}


def permission_engine(permission: dict[str, Any]) -> Engine:
    """An ALLOW engine whose only policy has `permission`: allowed iff it matches."""
    return engine({"rules": rules("ALLOW", p=policy(permissions=[permission]))})


def principal_engine(principal: dict[str, Any]) -> Engine:
    return engine({"rules": rules("ALLOW", p=policy(principals=[principal]))})


def request(
    path: str = "/",
    *,
    method: str = "GET",
    principal: str = "",
    source: str = "10.0.0.1",
    port: int = 8080,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    paths: PathOptions = DEFAULT_OPTIONS,
) -> RequestView:
    path, _, query_in_path = normalize_target(path, paths).partition("?")
    return RequestView(
        principal=principal,
        source=source,
        destination_port=port,
        method=method,
        path=path,
        query=query or query_in_path,
        headers=dict(headers or {}),
    )


def tunnel(
    *,
    principal: str = "",
    source: str = "10.0.0.1",
    port: int = 8080,
    headers: Mapping[str, str] | None = None,
) -> RequestView:
    """A CONNECT to app port `port`: what the inbound listener asks the RBAC filters."""
    return RequestView(
        principal=principal,
        source=source,
        destination_port=port,
        method="CONNECT",
        path="/",
        headers=dict(headers or {}),
        tunnel=True,
    )


def inbound_filters(push: PushContext, kind: str, namespace: str, workload: str, name: str) -> Any:
    """The HTTP filters of a node's inbound listener `name`."""
    listener = one(node(kind, namespace, workload), push, LISTENER_TYPE, name)
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return list(hcm.http_filters)


def inbound_engines(push: PushContext, namespace: str, workload: str, name: str) -> list[Engine]:
    """A sidecar's inbound RBAC filters, compiled as its proxy would (router last, skipped)."""
    filters = inbound_filters(push, "sidecar", namespace, workload, name)
    assert filters[-1].name == "envoy.filters.http.router"
    for f in filters[:-1]:
        assert f.name == "envoy.filters.http.rbac"
        assert f.typed_config.type_url == RBAC_TYPE
    return [Engine.compile_any(f.typed_config) for f in filters[:-1]]
