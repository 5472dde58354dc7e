"""ConfigState: what the proxy holds from xDS, and the one place responses are accepted.

It is the xDS client's handler. A response for one type is decoded whole
before anything changes: one bad resource NACKs the response and the state
keeps what it had (DESIGN §2). Accepted resources replace those of the same
name; names the control plane stops sending are kept (we announce
`ignore_resource_deletion`, gRFC A53), so the proxy keeps working when config
goes missing. Names answered NOT_FOUND are remembered so requests for them
fail fast.

It follows references as grpcio does, subscribing on demand: a Listener's
RouteConfiguration name, a RouteConfiguration's clusters, a Cluster's EDS
name. Observers (`watch`) hear about every accepted change; requests that
arrived before their config `wait_changed()`.

Must not know about sockets, requests or load balancing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

# Types that arrive only nested in `Any`s (HTTP filter configs, load-balancing
# policies): imported so that their descriptors are known when `dump` renders them.
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.load_balancing_policies.round_robin.v3 import (  # noqa: F401
    round_robin_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToDict

from trellis.proxy.config.resources import (
    ClusterConfig,
    ConfigError,
    EndpointConfig,
    ListenerConfig,
    decode_assignment,
    decode_cluster,
    decode_listener,
    decode_route_config,
)
from trellis.proxy.config.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SHORT,
)
from trellis.routing import RouteTable

log = logging.getLogger("trellis.proxy.config")

Subscribe = Callable[[str, Iterable[str]], None]
Observer = Callable[[str, frozenset[str]], None]

_DECODERS: dict[str, Callable[[any_pb2.Any], tuple[str, Any]]] = {
    LISTENER_TYPE: decode_listener,
    ROUTE_TYPE: decode_route_config,
    CLUSTER_TYPE: decode_cluster,
    ENDPOINT_TYPE: decode_assignment,
}


class ConfigState:
    def __init__(self) -> None:
        self.listeners: dict[str, ListenerConfig] = {}
        self.routes: dict[str, RouteTable] = {}
        self.clusters: dict[str, ClusterConfig] = {}
        self.assignments: dict[str, tuple[EndpointConfig, ...]] = {}
        self.missing: dict[str, dict[str, str]] = {t: {} for t in _DECODERS}
        self.versions: dict[str, str] = {}
        self.raw: dict[str, dict[str, any_pb2.Any]] = {t: {} for t in _DECODERS}
        self.nacks: dict[str, str] = {}
        self.connected = False
        self.server = ""
        self._subscribe: Subscribe | None = None
        self._observers: list[Observer] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._stores: dict[str, dict[str, Any]] = {
            LISTENER_TYPE: self.listeners,
            ROUTE_TYPE: self.routes,
            CLUSTER_TYPE: self.clusters,
            ENDPOINT_TYPE: self.assignments,
        }

    # -- wiring ---------------------------------------------------------------------------

    def bind(self, subscribe: Subscribe) -> None:
        """Give the state the xDS client's `subscribe` (it follows references through it)."""
        self._subscribe = subscribe

    def watch(self, observer: Observer) -> None:
        self._observers.append(observer)

    def subscribe(self, type_url: str, names: Iterable[str]) -> None:
        if self._subscribe is not None:
            self._subscribe(type_url, names)

    def wait_changed(self) -> asyncio.Future[None]:
        """A future resolved at the next accepted change (or NOT_FOUND answer)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    # -- XdsHandler -----------------------------------------------------------------------

    def on_connection(self, connected: bool, server: str) -> None:
        self.connected = connected
        self.server = server

    def on_response(
        self,
        type_url: str,
        version: str,
        resources: Sequence[any_pb2.Any],
        errors: Mapping[str, str],
    ) -> str | None:
        decode = _DECODERS.get(type_url)
        if decode is None:
            return f"unsupported type {type_url}"
        decoded: dict[str, tuple[Any, any_pb2.Any]] = {}
        try:
            for packed in resources:
                name, config = decode(packed)
                if name in decoded:
                    raise ConfigError(f"{name}: sent twice in one response")
                decoded[name] = (config, packed)
        except ConfigError as e:
            reason = str(e)
            self.nacks[type_url] = reason
            log.warning("%s version %s refused: %s", SHORT[type_url], version, reason)
            return reason
        self.nacks.pop(type_url, None)
        store = self._stores[type_url]
        raw = self.raw[type_url]
        missing = self.missing[type_url]
        for name, (config, packed) in decoded.items():
            store[name] = config
            raw[name] = packed
            missing.pop(name, None)
        for name, reason in errors.items():
            if name not in store:
                missing[name] = reason
        self.versions[type_url] = version
        changed = frozenset(decoded) | frozenset(errors)
        self._follow(type_url, [c for c, _ in decoded.values()])
        for observer in self._observers:
            observer(type_url, changed)
        self._wake()
        return None

    def _follow(self, type_url: str, configs: list[Any]) -> None:
        """Subscribe to what the accepted resources reference."""
        if type_url == LISTENER_TYPE:
            rds = [c.route_config_name for c in configs if c.route_config_name]
            if rds:
                self.subscribe(ROUTE_TYPE, rds)
            clusters = [n for c in configs if c.routes is not None for n in c.routes.clusters()]
            if clusters:
                self.subscribe(CLUSTER_TYPE, clusters)
        elif type_url == ROUTE_TYPE:
            clusters = [n for table in configs for n in table.clusters()]
            if clusters:
                self.subscribe(CLUSTER_TYPE, clusters)
        elif type_url == CLUSTER_TYPE:
            eds = [c.eds_name for c in configs if c.discovery == "EDS"]
            if eds:
                self.subscribe(ENDPOINT_TYPE, eds)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- views ----------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything held, as JSON: per type the version, resources and NOT_FOUND names."""
        out: dict[str, Any] = {"connected": self.connected, "server": self.server}
        for type_url, raw in self.raw.items():
            out[SHORT[type_url]] = {
                "version": self.versions.get(type_url, ""),
                "nack": self.nacks.get(type_url),
                "resources": {name: _rendered(packed) for name, packed in sorted(raw.items())},
                "not_found": dict(sorted(self.missing[type_url].items())),
            }
        return out


def _rendered(packed: any_pb2.Any) -> dict[str, Any]:
    """One held resource as JSON; a type this process cannot render (say a nested `Any`
    of an optional filter it never imported) is named, not allowed to break the page."""
    try:
        return dict(MessageToDict(_unpacked(packed), preserving_proto_field_name=True))
    except (KeyError, TypeError) as e:
        return {"@type": packed.type_url, "render_error": str(e)}


def _unpacked(packed: any_pb2.Any) -> Any:
    from google.protobuf import symbol_database

    cls = symbol_database.Default().GetSymbol(packed.TypeName())
    message = cls()
    packed.Unpack(message)
    return message
