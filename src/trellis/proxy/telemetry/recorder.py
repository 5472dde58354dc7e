"""What a finished exchange leaves behind: one metrics sample and, when enabled, one JSON
access-log line.

Who is who: the outbound side reports as `source` (itself) and learns the
destination from the cluster it chose (`outbound|PORT||NAME.NS.svc.mesh`) and
the endpoint's workload; it tells the inbound side who is calling in the
`x-trellis-peer` header (`workload=..;namespace=..;app=..;service=..`). The
inbound side reports as `destination`. The peer header is only as trustworthy
as the network until mTLS binds it to a certificate (next issue); its values
are length- and charset-checked, and the series count is capped, so a
hostile caller cannot blow up cardinality.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from trellis.proxy.telemetry.metrics import Labels, RequestMetrics, Series

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange

_LABEL_CACHE_MAX = 4096
# Inbound keys hold the caller's peer header: only headers up to this long are cached
# (parse_peer reads at most 8 fields of 128 characters), so the cache stays small.
_PEER_CACHE_MAX_CHARS = 600
_SAFE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Identity:
    workload: str
    namespace: str
    app: str

    def peer_header(self, service: str = "") -> bytes:
        text = f"workload={self.workload};namespace={self.namespace};app={self.app}"
        return text.encode("ascii")


def parse_peer(value: str | None) -> dict[str, str]:
    """The peer header's fields; anything malformed reads as unknown."""
    out: dict[str, str] = {}
    if not value:
        return out
    for part in value.split(";")[:8]:
        key, sep, val = part.partition("=")
        if sep and key in ("workload", "namespace", "app", "service") and _SAFE.match(val):
            out[key] = val
    return out


def cluster_service(cluster: str) -> tuple[str, str, str]:
    """(fqdn, name, namespace) of an `outbound|PORT||NAME.NS.svc.mesh` cluster name."""
    parts = cluster.split("|")
    if len(parts) == 4 and parts[0] == "outbound":
        fqdn = parts[3]
        bits = fqdn.split(".")
        if len(bits) >= 2:
            return fqdn, bits[0], bits[1]
    if cluster:
        return cluster, cluster, UNKNOWN
    return UNKNOWN, UNKNOWN, UNKNOWN


class Recorder:
    def __init__(
        self, me: Identity, metrics: RequestMetrics, access_log: TextIO | None = None
    ) -> None:
        self.me = me
        self.metrics = metrics
        self.access_log = access_log
        # Label tuples and their series, by what decides them: built once each.
        # Outbound: (cluster, endpoint workload, mTLS, status, flags...); inbound: (the
        # caller's peer header as sent, mTLS, status, flags...).
        self._outbound_labels: dict[tuple[object, ...], tuple[Labels, Series]] = {}
        self._inbound_labels: dict[tuple[object, ...], tuple[Labels, Series]] = {}
        # Live traffic (`trellis tap`): None while no tap is active, else called per
        # finished exchange with (exchange, direction, labels, seconds); trellis.proxy.live.
        self.tap: Callable[[Exchange, str, Labels, float], None] | None = None

    def _series(
        self,
        cache: dict[tuple[object, ...], tuple[Labels, Series]],
        key: tuple[object, ...],
        labels: Labels,
    ) -> tuple[Labels, Series]:
        if len(cache) >= _LABEL_CACHE_MAX:
            cache.clear()
        entry = cache[key] = (labels, self.metrics.series(labels))
        return entry

    def outbound(self, ex: Exchange) -> None:
        host = ex.host
        key = (
            ex.cluster_name,
            host.config.workload if host is not None else "",
            host is not None and host.pool.tls is not None,
            ex.status,
            *ex.flags,
        )
        entry = self._outbound_labels.get(key)
        if entry is None:
            entry = self._series(self._outbound_labels, key, self._outbound(ex))
        labels = entry[0]
        self._record(ex, labels, entry[1], "outbound", labels[7])

    def _outbound(self, ex: Exchange) -> tuple[str, ...]:
        fqdn, name, namespace = cluster_service(ex.cluster_name)
        host = ex.host
        me = self.me
        # Endpoint metadata names the workload WORKLOAD.NAMESPACE.
        workload, _, workload_ns = (host.config.workload if host is not None else "").rpartition(
            "."
        )
        labels = (
            "source",
            me.workload,
            me.namespace,
            me.app,
            workload or UNKNOWN,
            workload_ns if workload else UNKNOWN,
            UNKNOWN,
            fqdn,
            name,
            namespace,
            "http",
            str(ex.status),
            ",".join(ex.flags) or "-",
            "mutual_tls" if host is not None and host.pool.tls is not None else "none",
        )
        return labels

    def inbound(self, ex: Exchange) -> None:
        raw = ex.head.peer
        secure = ex.conn.secure
        key = (raw, secure, ex.status, *ex.flags)
        entry = self._inbound_labels.get(key)
        if entry is None:
            header = raw.decode("latin-1") if raw is not None else None
            labels = self._inbound(ex, header, secure)
            if header is not None and len(header) > _PEER_CACHE_MAX_CHARS:
                entry = (labels, self.metrics.series(labels))  # not kept: too big a key
            else:
                entry = self._series(self._inbound_labels, key, labels)
        labels = entry[0]
        self._record(ex, labels, entry[1], "inbound", labels[7])

    def _inbound(self, ex: Exchange, header: str | None, secure: bool) -> Labels:
        peer = parse_peer(header)
        me = self.me
        service = peer.get("service", UNKNOWN)
        return (
            "destination",
            peer.get("workload", UNKNOWN),
            peer.get("namespace", UNKNOWN),
            peer.get("app", UNKNOWN),
            me.workload,
            me.namespace,
            me.app,
            service,
            service.split(".")[0],
            me.namespace,
            "http",
            str(ex.status),
            ",".join(ex.flags) or "-",
            "mutual_tls" if secure else "none",
        )

    def _record(
        self, ex: Exchange, labels: Labels, series: Series, direction: str, service: str
    ) -> None:
        duration = ex.ctx.loop.time() - ex.start_time
        series.add(duration * 1000.0, ex.req_bytes, ex.resp_bytes)
        tap = self.tap
        if tap is not None:
            tap(ex, direction, labels, duration)
        log = self.access_log
        if log is None:
            return
        head = ex.head
        host = ex.host
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "direction": direction,
            "method": head.method,
            "path": head.path,
            "authority": head.authority,
            "protocol": f"HTTP/{head.version}",
            "status": ex.status,
            "flags": ",".join(ex.flags) or "-",
            "duration_ms": round(duration * 1000.0, 3),
            "bytes_received": ex.req_bytes,
            "bytes_sent": ex.resp_bytes,
            "upstream_cluster": ex.cluster_name or None,
            "upstream_host": f"{host.key[0]}:{host.key[1]}" if host is not None else None,
            "source": labels[1],
            "destination_service": service,
            "route": ex.route.name if ex.route is not None else None,
            "authz_policy": ex.authz_policy,
            "shadow_denied_by": ex.shadow_denied_by,
            "peer_identity": ex.conn.peer_identity or None,
            "request_id": head.get("x-request-id"),
            "user_agent": head.get("user-agent"),
        }
        log.write(json.dumps(entry, separators=(",", ":")) + "\n")
        log.flush()


def open_access_log(target: str | None) -> TextIO | None:
    """`-` is stdout, a path is appended to, None/'' is off."""
    if not target:
        return None
    if target == "-":
        return sys.stdout
    return open(target, "a", buffering=1)  # lives as long as the proxy
