"""ListenerContext: what every exchange of one listener shares, built once per listener.

The loop, the clusters, who we are (for the peer header and metrics), how to
record a finished exchange, and `wait_for`: the slow path for a request whose
config has not arrived yet (the first call to a service subscribes on demand
and waits for the answer; later calls never wait).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from trellis.proxy.config.state import ConfigState
from trellis.proxy.http1.head import Headers
from trellis.proxy.stack.cluster import ClusterManager
from trellis.proxy.telemetry.tracer import Tracer

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange

CONFIG_WAIT = 10.0  # how long a request waits for config it asked for


def _ignore(outcome: str, policy: str) -> None:
    pass


class ListenerContext:
    __slots__ = (
        "_peer_headers",
        "authz_counts",
        "clusters",
        "config_wait",
        "direction",
        "loop",
        "outbound",
        "own_addresses",
        "peer_header",
        "record",
        "scheme",
        "state",
        "tracer",
    )

    def __init__(
        self,
        direction: str,
        state: ConfigState,
        clusters: ClusterManager,
        record: Callable[[Exchange], None],
        *,
        peer_header: bytes = b"",
        scheme: str = "http",
        config_wait: float = CONFIG_WAIT,
    ) -> None:
        self.direction = direction  # "outbound" | "inbound"
        self.outbound = direction == "outbound"
        # The proxy's tracer (shared by its listeners); off until the config turns it on.
        self.tracer = Tracer()
        self.loop = asyncio.get_event_loop()
        self.state = state
        self.clusters = clusters
        self.record = record
        self.peer_header = peer_header
        self.scheme = scheme
        self.config_wait = config_wait
        # Counts an authorization outcome ("denied" | "shadow_denied", policy name).
        self.authz_counts: Callable[[str, str], None] = _ignore
        self._peer_headers: dict[str, list[tuple[bytes, bytes]]] = {}  # by cluster
        # The proxy's own listeners: a request sent back to one of them is a loop.
        self.own_addresses: set[tuple[str, int]] = set()

    def request_headers(self, exchange: Exchange) -> Headers:
        """Headers this listener adds to every request it sends upstream."""
        if not self.peer_header:
            return []
        cluster = exchange.cluster_name
        headers = self._peer_headers.get(cluster)
        if headers is None:
            value = self.peer_header
            if cluster.startswith("outbound|"):
                value += b";service=" + cluster.rsplit("|", 1)[1].encode("ascii", "replace")
            if len(self._peer_headers) > 4096:
                self._peer_headers.clear()
            headers = self._peer_headers[cluster] = [(b"x-trellis-peer", value)]
        return headers

    def wait_for(
        self, ready: Callable[[], bool], then: Callable[[bool, str], None], what: str
    ) -> asyncio.Task[None]:
        """Call `then(True, "")` once `ready()` holds, or `then(False, why)` at the deadline.

        The task is the exchange's `pending`: cancelling it (the client left) calls nothing.
        """

        async def waiting() -> None:
            deadline = self.loop.time() + self.config_wait
            while not ready():
                left = deadline - self.loop.time()
                if left <= 0:
                    then(False, f"{what}: no config from the control plane")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.state.wait_changed(), left)
            then(True, "")

        return self.loop.create_task(waiting())
