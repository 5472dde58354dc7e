"""Inbound listener (the workload's mesh address): calls from other sidecars to this app.

Its routes come inline in the Listener `trellis/inbound?address=IP:PORT`: each
app port is a STATIC cluster `inbound|PORT||` (127.0.0.1:PORT), chosen by the
`x-trellis-target-port` header the calling sidecar sets from the endpoint's
metadata (no header: the first port). Internal headers are dropped before the
app sees the request. Connections arrive through the Acceptor (mTLS or
plaintext per the listener's mode); the RBAC filters (DENY then ALLOW) run on
every request after the route match, with the peer's SPIFFE ID from its
certificate: a denial is a 403 with flag RBAC
and the policy's name in the access log and metrics; dry-run policies only
count and log.

Must not know how requests are forwarded (stack/exchange.py does that).
"""

from __future__ import annotations

from trellis.authz import NO_POLICY, Engine, RequestView, authorize
from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import LISTENER_TYPE
from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.stack.exchange import Exchange
from trellis.routing import ForwardAction, Route


class InboundListener:
    def __init__(self, ctx: ListenerContext, state: ConfigState, name: str) -> None:
        self.ctx = ctx
        self.state = state
        self.name = name  # the Listener resource: trellis/inbound?address=IP:PORT

    def start(self, conn: ServerConnection, head: RequestHead) -> Exchange:
        ex = Exchange(conn, head, self.ctx)
        self._route(ex)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        pass

    def _route(self, ex: Exchange) -> None:
        listener = self.state.listeners.get(self.name)
        if listener is None or listener.routes is None:
            missing = self.state.missing[LISTENER_TYPE].get(self.name)
            if missing is not None:
                ex.respond(503, f"inbound listener: {missing}\n".encode(), flags="NC")
                return
            ex.pending = self.ctx.wait_for(
                lambda: self.name in self.state.listeners,
                lambda ok, why: self._route(ex) if ok else self._no_config(ex, why),
                "inbound listener",
            )
            return
        head = ex.head
        route = listener.routes.select(head.authority, head.method, head.path or "/", head)
        if route is None:
            ex.respond(404, b"no route matched\n", flags="NR")
            return
        if listener.authz and not self._authorized(ex, route, listener.authz, head.header_map()):
            return
        ex.run(route)

    def _authorized(
        self, ex: Exchange, route: Route, engines: tuple[Engine, ...], headers: dict[str, str]
    ) -> bool:
        """The RBAC filters (DENY, then ALLOW) on what the request is and who sends it: the
        peer's SPIFFE ID from its client certificate, never from a header."""
        head = ex.head
        path, _, query = head.path.partition("?")
        conn = ex.conn
        request = RequestView(
            principal=conn.peer_identity,
            source=conn.peer[0],
            destination_port=_app_port(route),
            method=head.method,
            path=path or "/",
            query=query,
            headers=headers,
        )
        decision = authorize(engines, request)
        if decision.shadow_denied_by is not None:
            ex.shadow_denied_by = decision.shadow_denied_by
            self.ctx.authz_counts("shadow_denied", decision.shadow_denied_by)
        if decision.allowed:
            return True
        ex.authz_policy = decision.policy or NO_POLICY
        self.ctx.authz_counts("denied", ex.authz_policy)
        # HTTP/1.1 only for now: gRPC callers (HTTP/2) will get PERMISSION_DENIED once the
        # sidecar speaks HTTP/2; proxyless gRPC servers enforce the same filters themselves.
        ex.respond(403, b"RBAC: access denied\n", flags="RBAC")
        return False

    def _no_config(self, ex: Exchange, why: str) -> None:
        ex.pending = None
        ex.respond(503, f"{why}\n".encode(), flags="NC")


def _app_port(route: Route) -> int:
    """The app port an inbound route forwards to: its `inbound|PORT||` cluster."""
    action = route.action
    if isinstance(action, ForwardAction):
        for name, _ in action.clusters:
            parts = name.split("|")
            if len(parts) == 4 and parts[0] == "inbound" and parts[1].isdigit():
                return int(parts[1])
    return 0
