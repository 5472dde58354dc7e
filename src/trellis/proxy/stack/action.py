"""The route-action layer: a route that answers by itself (a redirect, a direct response)
answers here; a forwarding route goes on down the stack. Envoy's router decides the same
before it looks for a cluster.

Must not know clusters, retries or connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.routing import DirectResponseAction, ForwardAction, RedirectAction
from trellis.routing.route import Route

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange


def forwards(ex: Exchange, route: Route) -> bool:
    """True when the route forwards; else the exchange has been answered."""
    action = route.action
    if type(action) is ForwardAction:
        return True
    if isinstance(action, RedirectAction):
        location = action.location(ex.ctx.scheme, ex.head.authority, ex.head.path)
        ex.respond(action.status, b"", extra=[(b"location", location.encode("latin-1"))])
        return False
    if isinstance(action, DirectResponseAction):
        ex.respond(action.status, action.body)
        return False
    if isinstance(action, ForwardAction):
        return True
    ex.respond(500, f"route {route.name!r}: action not for sidecars\n".encode())
    return False
