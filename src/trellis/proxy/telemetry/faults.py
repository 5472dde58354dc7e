"""Faults: unexpected exceptions in the data plane, logged and counted where they are caught.

A bug in the proxy must cost one connection, never the process and never a request
sent twice: each connection's entry points (bytes in, connection lost) catch what
they did not expect, record it here and close that connection (see
`ServerConnection.fault` and `UpstreamConnection.fault`). "Should never happen"
must still be loud: every fault is counted (`trellis_proxy_faults_total{where}` on
/metrics, `faults` on /stats) and logged — with its traceback the first few times a
place faults, then one line each, so that a fault per request cannot flood the log.

Must not know what the connections do; one process-wide table (the connections reach
it without a reference to the proxy).
"""

from __future__ import annotations

import logging

log = logging.getLogger("trellis.proxy.faults")

TRACEBACKS_PER_PLACE = 5  # tracebacks logged per `where` before one-line reports


class Faults:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def record(self, where: str, error: BaseException) -> None:
        """Count and log `error`, caught in `where` (a place: "downstream", "upstream"...)."""
        count = self.counts.get(where, 0) + 1
        self.counts[where] = count
        if count <= TRACEBACKS_PER_PLACE:
            log.error("proxy fault in %s (closing that connection)", where, exc_info=error)
        else:
            log.error(
                "proxy fault in %s (closing that connection): %s: %s (fault #%d there)",
                where,
                type(error).__name__,
                error,
                count,
            )

    def total(self) -> int:
        return sum(self.counts.values())

    def render(self) -> list[str]:
        """Prometheus text lines."""
        lines = [
            "# HELP trellis_proxy_faults_total Unexpected exceptions caught in the proxy"
            " (each closed one connection).",
            "# TYPE trellis_proxy_faults_total counter",
        ]
        for where, count in sorted(self.counts.items()):
            lines.append(f'trellis_proxy_faults_total{{where="{where}"}} {count}')
        return lines


FAULTS = Faults()
