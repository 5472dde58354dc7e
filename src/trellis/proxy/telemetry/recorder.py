"""What a finished exchange leaves behind: one metrics sample and, when enabled, one JSON
access-log line.

Who is who (Istio's label set, metrics.LABELS): the outbound side reports as
`source` (itself: workload, namespace, app/version labels, canonical name and
revision, its SPIFFE ID under mTLS) and learns the destination from the cluster
it chose (`outbound|PORT||NAME.NS.svc.mesh`), the endpoint's metadata (workload; app,
version, canonical name and revision as the control plane read them from its labels)
and the cluster's mTLS settings (the peer's SPIFFE ID when they name exactly one). It
tells the inbound side who is calling in the `x-trellis-peer` header
(`workload=..;namespace=..;app=..;version=..;cs=..;cr=..;service=..`). The inbound
side reports as `destination`; under mTLS the caller's principal is its
certificate's SPIFFE ID, and a header naming another namespace than the
certificate is ignored. The header's values are length- and charset-checked, and
the series count is capped, so a hostile caller cannot blow up cardinality.

CONNECT tunnels count in the TCP metrics instead (`request_protocol="tcp"`): the
exchange is recorded when its tunnel is established (opened) and when it ends
(closed, with its bytes).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from trellis.proxy.telemetry.metrics import LABELS, Labels, RequestMetrics, Series, TcpSeries
from trellis.wire import parse_peer as parse_peer
from trellis.wire import peer_value, split_workload_id, workload_peer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from trellis.proxy.identity.svid import Svid
    from trellis.proxy.stack.exchange import Exchange

_LABEL_CACHE_MAX = 4096
# Inbound keys hold the caller's peer header: only headers up to this long are cached
# (parse_peer reads at most 8 fields of 128 characters), so the cache stays small.
_PEER_CACHE_MAX_CHARS = 1100
UNKNOWN = "unknown"
_DESTINATION_SERVICE = LABELS.index("destination_service")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this proxy is, for its metrics' source_* (outbound) or destination_* (inbound)
    labels: from its options (workload, namespace, labels) and its SVID (principal)."""

    workload: str
    namespace: str
    app: str
    version: str = UNKNOWN
    canonical_service: str = ""  # "" means the workload name
    canonical_revision: str = "latest"
    principal: str = ""  # our SPIFFE ID once we have an SVID
    cluster: str = UNKNOWN

    @classmethod
    def of(
        cls, workload: str, namespace: str, labels: Mapping[str, str], principal: str = ""
    ) -> Identity:
        """Istio's rules (`trellis.wire.workload_peer`, which the control plane applies
        to the endpoints it sends)."""
        fields = dict(workload_peer(workload, namespace, labels))
        return cls(
            workload,
            namespace,
            fields["app"],
            fields["version"],
            fields["cs"],
            fields["cr"],
            principal,
        )

    def peer_header(self, service: str = "") -> bytes:
        fields = [
            ("workload", self.workload),
            ("namespace", self.namespace),
            ("app", self.app),
            ("version", self.version),
            ("cs", self.canonical_service or self.workload),
            ("cr", self.canonical_revision),
        ]
        return peer_value(fields).encode("ascii")


def principal_namespace(principal: str) -> str:
    """The namespace in `spiffe://TD/ns/NS/sa/SA`, or ""."""
    parts = split_workload_id(principal)
    return "" if parts is None else parts[1]


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
    """Turns finished exchanges into metrics (and access-log lines). HTTP exchanges count in
    the request metrics; CONNECT tunnels in the TCP metrics (opened when established, closed
    with their bytes when they end)."""

    def __init__(
        self, me: Identity, metrics: RequestMetrics, access_log: TextIO | None = None
    ) -> None:
        self.me = me
        self.metrics = metrics
        self.access_log = access_log
        self._tcp_labels: dict[tuple[object, ...], TcpSeries] = {}  # as below, for TCP
        self._tunnels = Series()  # tunnels' durations: not a metric (_tcp_closed)
        # Label tuples and their series, by what decides them: built once each.
        # Outbound: (cluster, endpoint workload, mTLS, status, flags...); inbound: (the
        # caller's peer header as sent, its principal, mTLS, status, flags...).
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

    def use_svid(self, svid: Svid) -> None:
        """Our SVID arrived or rotated: its SPIFFE ID is our principal from now on."""
        if svid.spiffe_id != self.me.principal:
            self.set_identity(dataclasses.replace(self.me, principal=svid.spiffe_id))

    def set_identity(self, me: Identity) -> None:
        """A new identity (our SVID arrived): label sets are built again from now on."""
        self.me = me
        self._outbound_labels.clear()
        self._inbound_labels.clear()
        self._tcp_labels.clear()

    # -- HTTP -----------------------------------------------------------------------------

    def outbound(self, ex: Exchange) -> None:
        if ex.head.method == "CONNECT":
            self._tunnel(ex, True)
            return
        host = ex.host
        key = (
            ex.cluster_name,
            host.config.workload if host is not None else "",
            host.config.peer if host is not None else "",
            host is not None and host.pool.tls is not None,
            ex.status,
            *ex.flags,
        )
        entry = self._outbound_labels.get(key)
        if entry is None:
            entry = self._series(self._outbound_labels, key, self._outbound(ex))
        labels = entry[0]
        self._record(ex, labels, entry[1], "outbound", labels[_DESTINATION_SERVICE])

    def _outbound(self, ex: Exchange) -> Labels:
        return (
            *self._outbound_peers(ex),
            "http",
            str(ex.status),
            "",  # grpc_response_status: the data plane speaks HTTP/1, never gRPC
            ",".join(ex.flags) or "-",
            self._outbound_security(ex),
        )

    def _outbound_security(self, ex: Exchange) -> str:
        host = ex.host
        return "mutual_tls" if host is not None and host.pool.tls is not None else "none"

    def _outbound_peers(self, ex: Exchange) -> Labels:
        """reporter .. destination_cluster for a request this proxy sends."""
        fqdn, name, namespace = cluster_service(ex.cluster_name)
        host = ex.host
        me = self.me
        # Endpoint metadata names the workload WORKLOAD.NAMESPACE.
        workload, _, workload_ns = (host.config.workload if host is not None else "").rpartition(
            "."
        )
        tls = host.pool.tls if host is not None else None
        # The peer's principal: the one SPIFFE ID the cluster's mTLS settings accept.
        peer_principal = tls.sans[0] if tls is not None and len(tls.sans) == 1 else UNKNOWN
        # Its app, version and canonical name/revision: the endpoint's metadata (the
        # control plane writes its labels there), absent for endpoints outside the mesh.
        peer = parse_peer(host.config.peer if host is not None else None)
        return (
            "source",
            me.workload,
            me.canonical_service or me.workload,
            me.canonical_revision,
            me.namespace,
            (me.principal or UNKNOWN) if tls is not None else UNKNOWN,
            me.app,
            me.version,
            me.cluster,
            workload or UNKNOWN,
            workload_ns if workload else UNKNOWN,
            peer_principal,
            peer.get("app", UNKNOWN),
            peer.get("version", UNKNOWN),
            fqdn,
            peer.get("cs", UNKNOWN),
            peer.get("cr", UNKNOWN),
            name,
            namespace,
            UNKNOWN,
        )

    def inbound(self, ex: Exchange) -> None:
        if ex.head.method == "CONNECT":
            self._tunnel(ex, False)
            return
        raw = ex.head.peer
        conn = ex.conn
        key = (raw, conn.peer_identity, conn.secure, ex.status, *ex.flags)
        entry = self._inbound_labels.get(key)
        if entry is None:
            labels = self._inbound(ex)
            if raw is not None and len(raw) > _PEER_CACHE_MAX_CHARS:
                entry = (labels, self.metrics.series(labels))  # not kept: too big a key
            else:
                entry = self._series(self._inbound_labels, key, labels)
        labels = entry[0]
        self._record(ex, labels, entry[1], "inbound", labels[_DESTINATION_SERVICE])

    def _inbound(self, ex: Exchange) -> Labels:
        return (
            *self._inbound_peers(ex),
            "http",
            str(ex.status),
            "",  # grpc_response_status: the data plane speaks HTTP/1, never gRPC
            ",".join(ex.flags) or "-",
            "mutual_tls" if ex.conn.secure else "none",
        )

    def _inbound_peers(self, ex: Exchange) -> Labels:
        """reporter .. destination_cluster for a request this proxy receives. The caller's
        principal is its certificate's SPIFFE ID (mTLS only); when that names another
        namespace than the caller's peer header, the certificate wins."""
        raw = ex.head.peer
        peer = parse_peer(raw.decode("latin-1") if raw is not None else None)
        me = self.me
        principal = ex.conn.peer_identity if ex.conn.secure else ""
        namespace = peer.get("namespace", UNKNOWN)
        certified = principal_namespace(principal)
        if certified and certified != namespace:
            peer = {"namespace": certified}  # the header lied: keep only what is proven
            namespace = certified
        service = peer.get("service", UNKNOWN)
        name = service.split(".")[0] if service != UNKNOWN else UNKNOWN
        workload = peer.get("workload", UNKNOWN)
        return (
            "destination",
            workload,
            peer.get("cs", workload),
            peer.get("cr", UNKNOWN if workload == UNKNOWN else "latest"),
            namespace,
            principal or UNKNOWN,
            peer.get("app", UNKNOWN),
            peer.get("version", UNKNOWN),
            UNKNOWN,
            me.workload,
            me.namespace,
            (me.principal or UNKNOWN) if ex.conn.secure else UNKNOWN,
            me.app,
            me.version,
            service,
            me.canonical_service or me.workload,
            me.canonical_revision,
            name,
            me.namespace,
            me.cluster,
        )

    # -- TCP (CONNECT tunnels) ------------------------------------------------------------

    def _tunnel(self, ex: Exchange, outbound: bool) -> None:
        """A CONNECT exchange is recorded when its tunnel is established (not finished
        yet: one more connection opened) and when it ends (closed, with its bytes)."""
        if ex.finished:
            self._tcp_closed(ex, outbound)
        else:
            self._tcp(ex, outbound).opened += 1

    def _tcp(self, ex: Exchange, outbound: bool) -> TcpSeries:
        host = ex.host
        conn = ex.conn
        if outbound:
            key: tuple[object, ...] = (
                True,
                ex.cluster_name,
                host.config.workload if host is not None else "",
                host.config.peer if host is not None else "",
                host is not None and host.pool.tls is not None,
                *ex.flags,
            )
        else:
            key = (False, ex.head.peer, conn.peer_identity, conn.secure, *ex.flags)
        series = self._tcp_labels.get(key)
        if series is None:
            if outbound:
                flags = ",".join(ex.flags) or "-"
                labels = (*self._outbound_peers(ex), "tcp", flags, self._outbound_security(ex))
            else:
                security = "mutual_tls" if conn.secure else "none"
                labels = (*self._inbound_peers(ex), "tcp", ",".join(ex.flags) or "-", security)
            series = self.metrics.tcp_series(labels)
            if len(self._tcp_labels) >= _LABEL_CACHE_MAX:
                self._tcp_labels.clear()
            raw = ex.head.peer
            if raw is None or len(raw) <= _PEER_CACHE_MAX_CHARS:
                self._tcp_labels[key] = series
        return series

    def _tcp_closed(self, ex: Exchange, outbound: bool) -> None:
        series = self._tcp(ex, outbound)
        if ex.status != 200:  # never established: opened and closed at once
            series.opened += 1
        series.closed += 1
        series.sent += ex.resp_bytes
        series.received += ex.req_bytes
        # What follows every exchange (the access log line) still sees the tunnel, with
        # labels in the HTTP shape (request_protocol "tcp"); its duration goes to a series
        # that is never rendered: a tunnel's life is no request latency.
        if outbound:
            peers, security = self._outbound_peers(ex), self._outbound_security(ex)
        else:
            peers, security = self._inbound_peers(ex), "mutual_tls" if ex.conn.secure else "none"
        flags = ",".join(ex.flags) or "-"
        labels = (*peers, "tcp", str(ex.status), "", flags, security)
        direction = "outbound" if outbound else "inbound"
        self._record(ex, labels, self._tunnels, direction, labels[_DESTINATION_SERVICE])

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
