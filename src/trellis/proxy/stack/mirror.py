"""Request mirroring (HTTPRoute RequestMirror, Envoy's request_mirror_policies).

A copy of the request goes to the mirror cluster, fire-and-forget: its answer is
read and dropped, its failures are counted and never reach the client, and it
never delays the real request. As Envoy does, the copy's authority gets a
`-shadow` suffix so the mirror can tell copies from real traffic. Only requests
whose whole body the exchange kept (at most its 64 KiB replay buffer) are
mirrored; bigger ones are not copied.

The mirror layer of the stack (chain.py): the route's mirrors are planned as the
request comes down the stack, and sent (`send_mirrors`) once the whole body is known.
Each mirror fraction is drawn per request.
"""

from __future__ import annotations

import random

from trellis.proxy.http1.head import ResponseHead
from trellis.proxy.stack.cluster import ClusterManager, ClusterRuntime
from trellis.proxy.stack.pool import UpstreamConnection
from trellis.wire import TARGET_PORT_HEADER


def send_mirrors(
    clusters: ClusterManager,
    mirrors: tuple[tuple[str, float], ...],
    upstream_head: bytes,
    body: bytes,
) -> None:
    """Send the copies of a request (its head for the upstream, its whole framed body)
    to each mirror cluster drawn."""
    head = shadow_head(upstream_head)
    for name, fraction in mirrors:
        if fraction < 1.0 and random.random() >= fraction:
            continue
        cluster = clusters.get(name)
        if cluster is not None:
            MirrorRequest(cluster, head, body).start()


def shadow_head(upstream_head: bytes) -> bytes:
    """The request head with `-shadow` appended to its Host (the exchange writes Host
    first, right after the request line)."""
    line, _, rest = upstream_head.partition(b"\r\n")
    host, _, others = rest.partition(b"\r\n")
    name, _, value = host.partition(b":")
    if name.lower() != b"host":
        return upstream_head
    value = value.strip()
    hostname, colon, port = value.rpartition(b":")
    if colon and port.isdigit() and not hostname.endswith(b"]"):
        shadow = hostname + b"-shadow:" + port
    else:
        shadow = value + b"-shadow"
    return line + b"\r\nhost: " + shadow + b"\r\n" + others


class MirrorRequest:
    """One copy in flight: a PoolUser that sends, reads the answer, and lets go."""

    __slots__ = ("body", "cluster", "conn", "head", "host")

    def __init__(self, cluster: ClusterRuntime, head: bytes, body: bytes) -> None:
        self.cluster = cluster
        self.head = head
        self.body = body
        self.conn: UpstreamConnection | None = None
        self.host = cluster.pick()

    def start(self) -> bool:
        host = self.host
        if host is None:
            return False
        self.cluster.requests += 1
        host.requests += 1
        conn = host.pool.acquire(self)
        if conn is not None:
            self.on_connected(conn)
        return True

    def on_connected(self, conn: UpstreamConnection) -> None:
        assert self.host is not None
        self.conn = conn
        conn.start(self, head_request=self.head.startswith(b"HEAD "))
        head = self.head
        if self.host.target_port:
            head = head[:-2] + TARGET_PORT_HEADER + b": " + self.host.target_port + b"\r\n\r\n"
        conn.write(head + self.body)

    def on_connect_failed(self, reason: str) -> None:
        pass  # counted by the pool; a copy's failure is nobody's business

    def on_pool_overflow(self) -> None:
        pass  # counted by the breaker

    def on_upstream_response(self, head: ResponseHead) -> None:
        pass

    def on_upstream_body(self, data: bytes) -> None:
        pass

    def on_upstream_flush(self) -> None:
        pass

    def on_upstream_end(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.release(reusable=True)

    def on_upstream_lost(self, reason: str) -> None:
        self.conn = None

    def on_upstream_fault(self) -> None:
        self.conn = None

    def on_upstream_paused(self, paused: bool) -> None:
        pass
