"""Inbound listener (the workload's mesh address): calls from other sidecars to this app.

Its routes come inline in the Listener `trellis/inbound?address=IP:PORT`: each
app port is a STATIC cluster `inbound|PORT||` (127.0.0.1:PORT), chosen by the
`x-trellis-target-port` header the calling sidecar sets from the endpoint's
metadata (no header: the first port). Internal headers are dropped before the
app sees the request. TLS (mTLS from peers) and authorization slot in here
with the zero-trust issue; the listener is already its own class for that.

Must not know how requests are forwarded (stack/exchange.py does that).
"""

from __future__ import annotations

from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import LISTENER_TYPE
from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.stack.exchange import Exchange


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
        route = listener.routes.select(
            head.authority, head.method, head.path or "/", head.header_map()
        )
        if route is None:
            ex.respond(404, b"no route matched\n", flags="NR")
            return
        ex.run(route)

    def _no_config(self, ex: Exchange, why: str) -> None:
        ex.pending = None
        ex.respond(503, f"{why}\n".encode(), flags="NC")
