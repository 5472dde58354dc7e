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
count and log. The path is normalized first (listeners/paths.py): routes and
policies match, and the app receives, its normal form.

A CONNECT is a tunnel to an app port, and the requests it carries are never
seen. So it is accepted only to a port whose routes accept CONNECT (the
control plane enables it for ports declared `tcp`); to an HTTP port it is
refused 403 (flag RBAC, policy `none`), since it would carry requests past
that port's policies. Its authority must name the app port the tunnel ends at
(400 otherwise; the host is not used: the tunnel always ends at the app on
127.0.0.1). The RBAC filters then decide it at L4 (trellis.authz: an ALLOW
rule that needs an HTTP attribute does not match a tunnel, a DENY rule with
HTTP conditions denies it).

Must not know how requests are forwarded: the layers of stack/chain.py do that
(`Exchange.run(route)` enters them).
"""

from __future__ import annotations

from trellis.authz import NO_POLICY, Engine, RequestView, authorize
from trellis.proxy.config.resources import ListenerConfig
from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import LISTENER_TYPE
from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.listeners.paths import normalize_request_path
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.stack.exchange import Exchange
from trellis.proxy.stack.split import split_authority
from trellis.routing import ForwardAction, Route, RouteTable


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
        if head.method == "CONNECT":
            self._tunnel(ex, listener, listener.routes)
            return
        if not normalize_request_path(ex, listener.paths):
            return
        route = listener.routes.select(head.authority, head.method, head.path or "/", head)
        if route is None:
            ex.respond(404, b"no route matched\n", flags="NR")
            return
        if listener.authz and not self._authorized(ex, route, listener.authz, head.header_map()):
            return
        ex.run(route)

    def _tunnel(self, ex: Exchange, listener: ListenerConfig, routes: RouteTable) -> None:
        """A CONNECT: only to an app port that accepts tunnels, naming that port, and
        allowed by the RBAC filters at L4."""
        head = ex.head
        route = routes.select(head.authority, head.method, "/", head)
        if route is None:
            ex.respond(404, b"no route matched\n", flags="NR")
            return
        port = _app_port(route)
        if port not in listener.tunnel_ports:
            self._deny(
                ex,
                NO_POLICY,
                f"CONNECT refused: app port {port} speaks HTTP, and a tunnel would carry "
                "requests past its policies (declare the port tcp to accept tunnels)\n",
            )
            return
        named = split_authority(head.authority, 0)[1]
        if named != port:
            ex.respond(
                400, f"CONNECT names port {named}, not app port {port}\n".encode(), flags="DPE"
            )
            return
        if listener.authz and not self._authorized(
            ex, route, listener.authz, head.header_map(), tunnel=True
        ):
            return
        ex.run(route)

    def _authorized(
        self,
        ex: Exchange,
        route: Route,
        engines: tuple[Engine, ...],
        headers: dict[str, str],
        tunnel: bool = False,
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
            tunnel=tunnel,
            host=head.authority,  # as forwarded (absolute-form: the target's, not Host)
        )
        decision = authorize(engines, request)
        if decision.shadow_denied_by is not None:
            ex.shadow_denied_by = decision.shadow_denied_by
            self.ctx.authz_counts("shadow_denied", decision.shadow_denied_by)
        if decision.allowed:
            return True
        # HTTP/1.1 only for now: gRPC callers (HTTP/2) will get PERMISSION_DENIED once the
        # sidecar speaks HTTP/2; proxyless gRPC servers enforce the same filters themselves.
        self._deny(ex, decision.policy or NO_POLICY, "RBAC: access denied\n")
        return False

    def _deny(self, ex: Exchange, policy: str, why: str) -> None:
        ex.authz_policy = policy
        self.ctx.authz_counts("denied", policy)
        ex.respond(403, why.encode(), flags="RBAC")

    def _no_config(self, ex: Exchange, why: str) -> None:
        ex.pending = None
        ex.respond(503, f"{why}\n".encode(), flags="NC")


def _app_port(route: Route) -> int:
    """The app port an inbound route forwards to: its `inbound|PORT||` cluster."""
    action = route.action
    return action.app_port() if isinstance(action, ForwardAction) else 0
