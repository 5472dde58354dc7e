"""The fault-injection layer (HTTPRoute fault, Envoy's `envoy.filters.http.fault`): a
delay before the request goes on (flag DI), an abort answered here (flag FI). The draws
are the route's fractions (trellis.routing.fault); this layer only applies them.

Must not know clusters, retries or connections.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from trellis.routing.route import Route

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange


def delay(ex: Exchange, route: Route) -> float:
    """Seconds to hold the request before it goes on (0: none)."""
    fault = route.fault
    if fault is None:
        return 0.0
    seconds = fault.delay_for(random.random())
    if not seconds:
        return 0.0
    ex.flags.append("DI")
    return seconds


def aborted(ex: Exchange, route: Route) -> bool:
    """True when the fault answers the request instead of the upstream."""
    fault = route.fault
    if fault is None:
        return False
    status = fault.abort_for(random.random())
    if not status:
        return False
    ex.flags.append("FI")
    ex.respond(status, b"fault filter abort\n")
    return True
