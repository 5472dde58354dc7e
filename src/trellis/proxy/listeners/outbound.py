"""Outbound listener (127.0.0.1:15001): the app's calls to other services.

A request names its destination by the host and port of an absolute-form URI
(`GET http://ratings:9080/x`, what HTTP_PROXY clients send) or else by its Host
header. That `host[:port]`, lower-cased, is the Listener name (DESIGN §2): each
spelling a client may use is its own Listener pointing at one
RouteConfiguration. The first request for a name subscribes to it and waits
for the answer; later requests find it held.

A name the control plane answers NOT_FOUND is outside the registry: it goes
to the `trellis/outbound` listener (MeshConfig outboundTrafficPolicy), which
routes to PassthroughCluster (ALLOW_ANY: the host is reached directly, by DNS)
or BlackHoleCluster (REGISTRY_ONLY: 502, flag NR). Names that cannot be mesh
names (IP addresses, other DNS shapes) skip the lookup. A mesh name with an
ambiguous or unknown port is a 404.

CONNECT `host:port` takes the same way, then is tunnelled at L4 (stack/tunnel.py);
a mesh peer's inbound sidecar decides whether it accepts the tunnel.

The path is normalized with the listener's options before the route is
selected, and forwarded normalized (listeners/paths.py); the `trellis/outbound`
listener (hosts outside the mesh) states no normalization.

Must not know how requests are forwarded: the layers of stack/chain.py do that
(`Exchange.run(route)` enters them).
"""

from __future__ import annotations

from trellis.proxy.config.resources import ListenerConfig
from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import (
    BLACKHOLE_CLUSTER,
    LISTENER_TYPE,
    OUTBOUND_DEFAULT_LISTENER,
)
from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.listeners.paths import normalize_request_path
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.stack.exchange import Exchange
from trellis.routing import ForwardAction, RouteTable
from trellis.wire import mesh_name_shape, port_unresolved

_MESH_NAMES: dict[str, bool] = {}  # could_be_mesh_name's answers (cleared when it grows)
_MESH_NAMES_MAX = 4096


def could_be_mesh_name(authority: str) -> bool:
    """NAME, NAME.NAMESPACE or NAME.NAMESPACE.svc.mesh, with an optional port (cached:
    parsing an IP address costs more than the rest of routing)."""
    answer = _MESH_NAMES.get(authority)
    if answer is None:
        if len(_MESH_NAMES) >= _MESH_NAMES_MAX:
            _MESH_NAMES.clear()
        answer = _MESH_NAMES[authority] = mesh_name_shape(authority)
    return answer


class OutboundListener:
    def __init__(self, ctx: ListenerContext, state: ConfigState) -> None:
        self.ctx = ctx
        self.state = state

    def start(self, conn: ServerConnection, head: RequestHead) -> Exchange:
        ex = Exchange(conn, head, self.ctx)
        name = head.authority
        if not name:
            ex.respond(400, b"the request names no host\n", flags="NR")
        elif could_be_mesh_name(name):
            self._route(ex, name)
        else:
            self._default(ex)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        pass

    def _route(self, ex: Exchange, name: str) -> None:
        state = self.state
        listener = state.listeners.get(name)
        if listener is None:
            reason = state.missing[LISTENER_TYPE].get(name)
            if reason is not None:
                if port_unresolved(reason):
                    ex.respond(404, f"{reason}\n".encode(), flags="NR")
                else:
                    self._default(ex)
                return
            state.subscribe(LISTENER_TYPE, [name])
            ex.pending = self.ctx.wait_for(
                lambda: name in state.listeners or name in state.missing[LISTENER_TYPE],
                lambda ok, why: self._route(ex, name) if ok else self._no_config(ex, why),
                f"listener {name}",
            )
            return
        table: RouteTable | None = listener.routes
        rds = listener.route_config_name
        if table is None and rds is not None:
            table = state.routes.get(rds)
            if table is None:
                ex.pending = self.ctx.wait_for(
                    lambda: rds in state.routes,
                    lambda ok, why: self._route(ex, name) if ok else self._no_config(ex, why),
                    f"route configuration {rds}",
                )
                return
        if table is None:
            self._no_config(ex, f"listener {name} has no routes")
            return
        self._select(ex, listener, table)

    def _select(self, ex: Exchange, listener: ListenerConfig, table: RouteTable) -> None:
        if not normalize_request_path(ex, listener.paths):
            return
        head = ex.head
        route = table.select(head.authority, head.method, head.path or "/", head)
        if route is None:
            ex.respond(404, b"no route matched\n", flags="NR")
            return
        ex.run(route)

    def _default(self, ex: Exchange) -> None:
        """A host outside the registry: the outboundTrafficPolicy decides."""
        state = self.state
        listener = state.listeners.get(OUTBOUND_DEFAULT_LISTENER)
        table = listener.routes if listener is not None else None
        if listener is None or table is None:
            # No policy from the control plane yet: the mesh default, ALLOW_ANY.
            ex.forward_original_destination()
            return
        if not normalize_request_path(ex, listener.paths):
            return
        route = table.select(ex.head.authority, ex.head.method, ex.head.path or "/", {})
        if route is None:
            ex.respond(502, b"host not in the mesh registry\n", flags="NR")
            return
        action = route.action
        if isinstance(action, ForwardAction) and BLACKHOLE_CLUSTER in action.cluster_names:
            ex.respond(
                502,
                b"host not in the mesh registry (outboundTrafficPolicy REGISTRY_ONLY)\n",
                flags="NR",
            )
            return
        ex.run(route)

    def _no_config(self, ex: Exchange, why: str) -> None:
        ex.pending = None
        ex.respond(503, f"{why}\n".encode(), flags="NC")
