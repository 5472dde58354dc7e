"""The one adapter between the proxy's metrics registry and the telemetry stream.

`SignalsSource.deltas()` walks the registry's series (at most its series cap, a few
thousand) once per report, subtracts what the previous call saw and folds the labels
into edges: (reporter, source service, destination service, mTLS) -> requests, 5xx,
403-by-RBAC and latency buckets. Nothing is added per request: the registry already
counts everything needed. Services are canonical NAME.NAMESPACE: a proxy's own is its
`app` label (or workload) and namespace; a destination's comes from the cluster
(`destination_service_name`/`_namespace`); an inbound caller's from its peer header
(`source_app`, `source_workload_namespace`), "unknown" for a caller outside the mesh.

Reads the registry by Istio's label names (trellis.proxy.telemetry.metrics.LABELS) and
its series' `count` and `buckets`: a change to the registry is fixed here, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from trellis.proxy.telemetry import metrics as registry
from trellis.telemetry_api import telemetry_pb2 as pb

UNKNOWN = "unknown"
EdgeKey = tuple[int, str, str, bool]


def _index(name: str) -> int:
    return registry.LABELS.index(name)


class SignalsSource:
    def __init__(self, metrics: registry.RequestMetrics, service: str) -> None:
        self._metrics = metrics
        self.service = service  # this proxy's canonical service
        self._seen: dict[tuple[str, ...], tuple[int, list[int]]] = {}
        self._reporter = _index("reporter")
        self._source_app = _index("source_app")
        self._source_ns = _index("source_workload_namespace")
        self._dest_name = _index("destination_service_name")
        self._dest_ns = _index("destination_service_namespace")
        self._code = _index("response_code")
        self._flags = _index("response_flags")
        self._security = _index("connection_security_policy")
        self.overflowed = 0

    @property
    def bounds_ms(self) -> Sequence[float]:
        return [float(b) for b in registry.BUCKETS_MS]

    def _series(self) -> list[tuple[tuple[str, ...], registry.Series]]:
        return list(self._metrics._series.items())  # the registry's own map: read, not changed

    def deltas(self) -> list[pb.EdgeDelta]:
        """What changed since the last call, per edge (edges without new requests left out)."""
        edges: dict[EdgeKey, pb.EdgeDelta] = {}
        seen = self._seen
        for labels, series in self._series():
            count = series.count
            before = seen.get(labels)
            if before is not None and before[0] == count:
                continue
            buckets = list(series.buckets)
            if before is None:
                new, diff = count, buckets
            else:
                new = count - before[0]
                diff = [a - b for a, b in zip(buckets, before[1], strict=False)]
            seen[labels] = (count, buckets)
            if new <= 0:
                continue
            key = self._edge(labels)
            edge = edges.get(key)
            if edge is None:
                edge = edges[key] = pb.EdgeDelta(
                    reporter=cast(Any, key[0]), source=key[1], destination=key[2], mtls=key[3]
                )
                edge.buckets.extend([0] * len(diff))
            edge.requests += new
            code = labels[self._code]
            if code.startswith("5"):
                edge.errors += new
            if key[0] == pb.DESTINATION and "RBAC" in labels[self._flags].split(","):
                edge.denied += new
            for i, n in enumerate(diff):
                edge.buckets[i] += n
        self.overflowed = self._metrics.overflowed
        return list(edges.values())

    def _edge(self, labels: tuple[str, ...]) -> EdgeKey:
        mtls = labels[self._security] == "mutual_tls"
        if labels[self._reporter] == "source":
            return (
                pb.SOURCE,
                self.service,
                _service(labels[self._dest_name], labels[self._dest_ns]),
                mtls,
            )
        return (
            pb.DESTINATION,
            _service(labels[self._source_app], labels[self._source_ns]),
            self.service,
            mtls,
        )


def _service(name: str, namespace: str) -> str:
    if not name or name == UNKNOWN or name == "overflow":
        return UNKNOWN
    if not namespace or namespace == UNKNOWN or namespace == "overflow":
        return UNKNOWN
    return f"{name}.{namespace}"
