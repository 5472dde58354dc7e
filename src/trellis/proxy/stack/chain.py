"""The request path as a stack of layers, composed here and read top to bottom: the order
a request takes through a sidecar, outbound and inbound alike (as linkerd2-proxy's
`outbound/sidecar.rs` stacks route → split → retry → timeout → balance → endpoint, or an
Envoy filter chain returns continue or stop).

    logical target (a Route)
      1 route action   action.py      redirect / direct response answered here
      2 mirror         mirror.py      copies planned (sent once the whole body is known)
      3 fault          fault.py       delay (DI: resumes at `after_fault`), abort (FI)
      4 rate limit     ratelimit.py   the route's token bucket (429 RL)
      5 split          split.py       logical → concrete backend, waiting for its config
    concrete target (a cluster)
      6 circuit breaker core.py       max_requests (503 UO)
      7 retry + budget core.py        decisions per attempt (retry.py, budget.py)
      8 timeout        exchange.py    the route's timer, the per-try timer
      9 balance        cluster.py     one endpoint (P2C, round robin, ring)
    endpoint target (a host)
     10 endpoint pool  pool.py        a pooled or new connection (max_connections,
                                      max_pending: 503 UO), then the HTTP/1 exchange

Each layer is a plain function call that answers (stop) or returns to go on, so the usual
request costs a handful of native calls. The layers' decisions live in their modules;
stack/exchange.py is the I/O layer they drive (the downstream connection, the upstream
one, the timers, the HTTP/1 codec's re-framing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.proxy.stack import action, fault, ratelimit, split
from trellis.proxy.stack.core import admit
from trellis.proxy.stack.targets import ConcreteTarget, LogicalTarget

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange


def run(ex: Exchange, route: LogicalTarget) -> None:
    """A routed request, from its route down to the endpoint."""
    ex.route = route
    if not action.forwards(ex, route):  # 1 route action
        return
    if route.mirrors:  # 2 mirror
        ex.mirror_pending = True
    held = fault.delay(ex, route)  # 3 fault: delay
    if held > 0:
        ex.pending = ex.ctx.loop.call_later(held, ex.after_fault)
        return
    after_fault(ex)


def after_fault(ex: Exchange) -> None:
    route = ex.route
    assert route is not None
    if fault.aborted(ex, route):  # 3 fault: abort
        return
    if ratelimit.limited(ex, route):  # 4 rate limit
        return
    backend = split.to_backend(ex, route)  # 5 split (or wait: `Exchange.backend_ready`)
    if backend is not None:
        with_backend(ex, backend)


def forward_original_destination(ex: Exchange) -> None:
    """No route: where the request's authority points, outside the mesh (ALLOW_ANY)."""
    backend = split.original_destination(ex)
    if backend is not None:
        with_backend(ex, backend)


def with_backend(ex: Exchange, cluster: ConcreteTarget) -> None:
    if not admit(cluster.breaker, cluster.budget, ex.start_time):  # 6 circuit breaker
        cluster.overflows += 1
        ex.respond(503, b"upstream overflow\n", flags="UO")
        return
    # 7 retry with budget: the core (core.py) decides at each attempt's end, made when
    # the first decision is due (Exchange._decide).
    ex.bind(cluster)
    route = ex.route
    if ex.head.method == "CONNECT":
        ex.open_tunnel(cluster)  # 9-10 at L4 (tunnel.py)
        return
    if route is not None and route.timeout:  # 8 timeout
        ex.arm_route_timer(route.timeout)
    ex.prepare_upstream()
    ex.attempt()  # 9 balance, 10 endpoint pool (exchange.py), per attempt
