"""The split layer: logical target → concrete backend. A forwarding route names clusters
by weight (HTTPRoute backendRefs); one is drawn per request, and found among the
clusters at run time. A cluster the config has not brought yet is waited for (the first
call to a service subscribes on demand: `ListenerContext.wait_for`), up to the
listener's config wait, then answered 503 NC. An ORIGINAL_DST cluster (the passthrough
outside the mesh) becomes the cluster of the host the request names; a request that
names this proxy itself is refused (508, a loop).

Must not know retries, timers or connections.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from trellis.proxy.config.resources import ClusterConfig
from trellis.proxy.config.types import PASSTHROUGH_CLUSTER
from trellis.proxy.stack.targets import ConcreteTarget
from trellis.routing import ForwardAction, Route

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange


def to_backend(ex: Exchange, route: Route) -> ConcreteTarget | None:
    """The route's backend, drawn by weight; None when the request was answered, or when
    the backend's config is awaited (then `ex.backend_ready(backend)` goes on)."""
    action = route.action
    assert isinstance(action, ForwardAction)
    clusters = action.clusters
    name = clusters[0][0] if len(clusters) == 1 else action.pick(random.random())
    ex.cluster_name = name
    cluster = ex.ctx.clusters.get(name)
    if cluster is None:
        _wait_for(ex, name)
        return None
    return _concrete(ex, cluster)


def _wait_for(ex: Exchange, cluster_name: str) -> None:
    """The slow path: the cluster's config is not here yet (the first call to a service)."""
    ctx = ex.ctx

    def ready(ok: bool, why: str) -> None:
        ex.pending = None
        if ex.finished:
            return
        found = ctx.clusters.get(cluster_name) if ok else None
        if found is None:
            ex.respond(503, f"no cluster: {why}\n".encode(), flags="NC")
            return
        backend = _concrete(ex, found)
        if backend is not None:
            ex.backend_ready(backend)

    ex.pending = ctx.wait_for(
        lambda: ctx.clusters.get(cluster_name) is not None, ready, f"cluster {cluster_name}"
    )


def original_destination(ex: Exchange) -> ConcreteTarget | None:
    """Where the request's authority points, outside the mesh (ALLOW_ANY); None when
    answered."""
    ex.cluster_name = PASSTHROUGH_CLUSTER
    return _original_destination(ex, None)


def _concrete(ex: Exchange, cluster: ConcreteTarget) -> ConcreteTarget | None:
    if cluster.config.discovery == "ORIGINAL_DST":
        return _original_destination(ex, cluster.config)
    return cluster


def _original_destination(ex: Exchange, parent: ClusterConfig | None) -> ConcreteTarget | None:
    host, port = split_authority(ex.head.authority, 80)
    if not host:
        ex.respond(400, b"no destination host in the request\n", flags="NR")
        return None
    if (host, port) in ex.ctx.own_addresses:
        ex.respond(508, b"the request names this proxy: loop refused\n", flags="NR")
        return None
    return ex.ctx.clusters.original_destination(host, port, parent)


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """(host, port) of `host[:port]` or `[v6][:port]`; ("", 0) when it is not one."""
    host, port = authority, default_port
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return "", 0
        host, rest = authority[1:end], authority[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return "", 0
    elif ":" in authority:
        host, _, text = authority.rpartition(":")
        if not text.isdigit():
            return "", 0
        port = int(text)
    if not host or not 0 < port < 65536:
        return "", 0
    return host, port
