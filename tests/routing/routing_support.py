"""Helpers for routing tests: RouteConfigurations from dicts (proto JSON), one-route tables.

`select()` asks a table what the sidecar would: the path is normalized first with the
mesh's default options (trellis.routing.paths; a path the proxy refuses raises
PathRefused), as both of its listeners do before they select a route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401  (registers HTTPFault)
from google.protobuf.json_format import ParseDict

from trellis.routing import Route, RouteConfigError, RouteTable
from trellis.routing.paths import DEFAULT_OPTIONS, PathOptions, normalize_target

FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"


def rc(doc: Mapping[str, Any]) -> route_pb2.RouteConfiguration:
    """A RouteConfiguration from its proto-JSON form (field names as in the .proto)."""
    return ParseDict(dict(doc), route_pb2.RouteConfiguration())


def compile_doc(doc: Mapping[str, Any]) -> RouteTable:
    return RouteTable.compile(rc(doc))


def vhost(*routes: Mapping[str, Any], domains: tuple[str, ...] = ("*",), **extra: Any) -> Any:
    return {"name": "vh", "domains": list(domains), "routes": list(routes), **extra}


def table(
    *routes: Mapping[str, Any], domains: tuple[str, ...] = ("*",), **config: Any
) -> RouteTable:
    """One virtual host with `routes`; `config` adds RouteConfiguration fields."""
    return compile_doc({"name": "rc", "virtual_hosts": [vhost(*routes, domains=domains)], **config})


def forward(
    match: Mapping[str, Any] | None = None, cluster: str = "c", name: str = "r", **action: Any
) -> dict[str, Any]:
    """A forwarding route (`route` action) with `match` (default prefix `/`)."""
    return {
        "name": name,
        "match": dict(match) if match is not None else {"prefix": "/"},
        "route": {"cluster": cluster, **action},
    }


def only(route: Mapping[str, Any], **config: Any) -> Route:
    """The compiled form of a single route."""
    (compiled,) = table(route, **config).virtual_hosts[0].routes
    return compiled


def select(
    t: RouteTable,
    path: str = "/",
    method: str = "GET",
    authority: str = "example.com",
    headers: Mapping[str, str] | None = None,
    paths: PathOptions = DEFAULT_OPTIONS,
) -> Route | None:
    return t.select(authority, method, normalize_target(path, paths), headers or {})


def matches(match: Mapping[str, Any], path: str = "/", **kwargs: Any) -> bool:
    """Whether a one-route table with `match` selects the route for the request."""
    return select(table(forward(match)), path, **kwargs) is not None


def config_error(doc: Mapping[str, Any]) -> RouteConfigError:
    with pytest.raises(RouteConfigError) as info:
        compile_doc(doc)
    return info.value


def route_error(route: Mapping[str, Any], **vhost_extra: Any) -> RouteConfigError:
    """The error compiling one route in `virtual_hosts[0].routes[0]`."""
    return config_error({"name": "rc", "virtual_hosts": [vhost(route, **vhost_extra)]})


def fault_config(**fault: Any) -> dict[str, Any]:
    return {"envoy.filters.http.fault": {"@type": FAULT_TYPE, **fault}}
