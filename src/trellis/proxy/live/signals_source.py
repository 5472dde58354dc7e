"""The one adapter between the proxy's metrics registry and the telemetry stream.

`SignalsSource.deltas()` walks the registry's series (at most its series cap, a few
thousand) once per report, subtracts what the previous call saw and folds the labels
into edges: (reporter, source service, destination service, mTLS) -> requests, 5xx,
403-by-RBAC and latency buckets. Nothing is added per request: the registry already
counts everything needed. Services are canonical NAME.NAMESPACE, the same name from
both ends of a call: a proxy's own is its `app` label (or workload) and namespace; a
destination's is the endpoint's canonical service (`destination_canonical_service`, which
the control plane writes into EDS from the workload's labels; the cluster's Service name
when the endpoint has none); an inbound caller's comes from its peer header
(`source_canonical_service`, `source_workload_namespace`), "unknown" for a caller outside
the mesh.

Reads the registry through its read API (`http_series`, `label_index`, each series'
`count` and `buckets`): a change to the registry is fixed here, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from trellis.proxy.telemetry import metrics as registry
from trellis.telemetry_api import telemetry_pb2 as pb

UNKNOWN = "unknown"
EdgeKey = tuple[int, str, str, bool]


# Label positions in an HTTP series (the registry's read API, metrics.label_index): the
# caller's canonical service and namespace, the callee's canonical service and Service
# name and namespace, and the rest of what an edge needs. tap.py uses them too.
_index = registry.label_index
SOURCE_SERVICE = _index("source_canonical_service")
SOURCE_NAMESPACE = _index("source_workload_namespace")
DESTINATION_CANONICAL = _index("destination_canonical_service")
DESTINATION_NAME = _index("destination_service_name")
DESTINATION_NAMESPACE = _index("destination_service_namespace")
REPORTER = _index("reporter")
RESPONSE_CODE = _index("response_code")
RESPONSE_FLAGS = _index("response_flags")
SECURITY = _index("connection_security_policy")


def service_name(name: str, namespace: str) -> str:
    """NAME.NAMESPACE, or "unknown" when either is unknown (or the overflow series)."""
    if name in ("", UNKNOWN, "overflow") or namespace in ("", UNKNOWN, "overflow"):
        return UNKNOWN
    return f"{name}.{namespace}"


def destination_of(labels: tuple[str, ...]) -> str:
    """An outbound series' callee: the endpoint's canonical service (from EDS), as the
    callee names itself in its own reports: `reviews`, not the `reviews-v1` Service a route
    split sent the request to. The Service name when the endpoint has none."""
    name = labels[DESTINATION_CANONICAL]
    if name in ("", UNKNOWN):
        name = labels[DESTINATION_NAME]
    return service_name(name, labels[DESTINATION_NAMESPACE])


class SignalsSource:
    def __init__(self, metrics: registry.RequestMetrics, service: str) -> None:
        self._metrics = metrics
        self.service = service  # this proxy's canonical service
        self._seen: dict[tuple[str, ...], tuple[int, list[int]]] = {}
        self.overflowed = 0

    @property
    def bounds_ms(self) -> Sequence[float]:
        return [float(b) for b in registry.BUCKETS_MS]

    def deltas(self) -> list[pb.EdgeDelta]:
        """What changed since the last call, per edge (edges without new requests left out)."""
        edges: dict[EdgeKey, pb.EdgeDelta] = {}
        seen = self._seen
        overflow = registry.OVERFLOW
        for labels, series in self._metrics.http_series():
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
            if new <= 0 or labels == overflow:
                # Past the registry's cap: no edge to name (every label says "overflow");
                # the report's `overflowed` carries the count.
                continue
            key = self._edge(labels)
            edge = edges.get(key)
            if edge is None:
                edge = edges[key] = pb.EdgeDelta(
                    reporter=cast(Any, key[0]), source=key[1], destination=key[2], mtls=key[3]
                )
                edge.buckets.extend([0] * len(diff))
            edge.requests += new
            code = labels[RESPONSE_CODE]
            if code.startswith("5"):
                edge.errors += new
            if key[0] == pb.DESTINATION and "RBAC" in labels[RESPONSE_FLAGS].split(","):
                edge.denied += new
            for i, n in enumerate(diff):
                edge.buckets[i] += n
        self.overflowed = self._metrics.overflowed
        return list(edges.values())

    def _edge(self, labels: tuple[str, ...]) -> EdgeKey:
        mtls = labels[SECURITY] == "mutual_tls"
        if labels[REPORTER] == "source":
            return (pb.SOURCE, self.service, destination_of(labels), mtls)
        source = service_name(labels[SOURCE_SERVICE], labels[SOURCE_NAMESPACE])
        return (pb.DESTINATION, source, self.service, mtls)
