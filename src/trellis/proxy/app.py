"""ProxyApp: the composition root of the sidecar — config, xDS, clusters, listeners, admin.

Start-up, in order: bind the three listeners (so port 0 resolves to real
ports and the inbound listener's resource name is known), connect the ADS
stream and subscribe to the inbound listener and the outbound policy
listener. The proxy is ready (`/ready`, `wait_ready`) once both arrived and
the inbound clusters are usable; it serves the outbound side before that
too, waiting for config per request.

Shutdown (`drain`, then `aclose`):
1. stop accepting on every listener;
2. let requests in flight finish, up to the drain deadline; idle keep-alive
   connections are closed at once;
3. close what is left, the xDS stream and the upstream pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from trellis import compiled
from trellis.proxy.config.resources import TlsMode
from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import LISTENER_TYPE, OUTBOUND_DEFAULT_LISTENER
from trellis.proxy.identity.tls import ServerTls, TlsContexts
from trellis.proxy.listeners.acceptor import Acceptor
from trellis.proxy.listeners.admin import AdminListener, json_page
from trellis.proxy.listeners.inbound import InboundListener
from trellis.proxy.listeners.outbound import OutboundListener
from trellis.proxy.listeners.scrape import ScrapeListener
from trellis.proxy.listeners.server import RequestHandler, ServerConnection, connection_factory
from trellis.proxy.live.signals_source import SignalsSource
from trellis.proxy.live.stream import TelemetryClient
from trellis.proxy.live.tap import ProxyTaps
from trellis.proxy.options import Address, ProxyOptions, inbound_listener_name
from trellis.proxy.stack.cluster import ClusterManager
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.telemetry.faults import FAULTS
from trellis.proxy.telemetry.metrics import RequestMetrics
from trellis.proxy.telemetry.recorder import Identity, Recorder, open_access_log
from trellis.proxy.telemetry.tracing import ProxyTracing
from trellis.proxy.xds.client import AdsClient

if TYPE_CHECKING:
    from trellis.proxy.identity.agent import IdentityAgent

log = logging.getLogger("trellis.proxy")
# A deregistered sidecar keeps serving until its inbound side has been quiet this long
# (callers that heard of the removal have stopped; `quiesce`).
QUIET_AFTER_DEREGISTER = 0.5


class ProxyApp:
    def __init__(self, options: ProxyOptions) -> None:
        self.options = options
        self.state = ConfigState()
        self.clusters = ClusterManager(self.state)
        self.metrics = RequestMetrics(options.metrics_max_series)
        self.metrics.gauges.append(self._connection_gauges)
        self.metrics.gauges.append(FAULTS.render)
        self.metrics.gauges.append(self.clusters.metric_lines)  # ejections, overflows
        self.connections: dict[str, set[ServerConnection]] = {
            "outbound": set(),
            "inbound": set(),
            "admin": set(),
            "metrics": set(),
        }
        self.addresses: dict[str, Address] = {}
        self.inbound_name = ""
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self.acceptor: Acceptor | None = None
        self.identity: IdentityAgent | None = None  # with a join token
        self.tls = TlsContexts()
        self._sweeper: asyncio.Task[None] | None = None
        self._xds: AdsClient | None = None
        self._access_log = open_access_log(options.access_log)
        me = Identity.of(options.workload, options.namespace, options.labels)
        self.recorder = Recorder(me, self.metrics, self._access_log)
        # Golden signals and taps, on a stream beside ADS (trellis.proxy.live).
        # Its canonical service, as its callers name it (EDS metadata from the same labels).
        self.service = f"{me.canonical_service}.{me.namespace}"
        self.taps = ProxyTaps(self.service, options.workload, self._install_tap)
        self.live: TelemetryClient | None = None
        self.tracing = ProxyTracing(options, self.state)  # spans: telemetry/tracing.py
        self.metrics.gauges.append(self.tracing.metric_lines)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.options
        state, clusters = self.state, self.clusters
        me = self.recorder.me
        outbound_ctx = ListenerContext(
            "outbound", state, clusters, self.recorder.outbound, peer_header=me.peer_header()
        )
        inbound_ctx = ListenerContext("inbound", state, clusters, self.recorder.inbound)
        inbound_ctx.authz_counts = self.metrics.count_authz
        outbound_ctx.tracer = inbound_ctx.tracer = self.tracing.tracer
        if opts.join_token:
            # Identity first: without an SVID there is no mTLS, and no xDS on the secure port.
            # (The X.509 work runs in a child: this process never loads `cryptography`.)
            from trellis.proxy.identity.agent import IdentityAgent

            self.identity = IdentityAgent(opts.control, opts.ca_bundle, opts.join_token)
            self.identity.on_rotate(self.recorder.use_svid)  # our principal, in the metrics
            self.identity.on_rotate(self.tls.update)
            self.tls.update(await self.identity.start())
            self._trace_with_identity(self.identity)
        inbound = InboundListener(inbound_ctx, state, "")
        self._listen_inbound(opts.inbound, inbound)
        bound = self.addresses["inbound"]
        self.inbound_name = inbound.name = inbound_listener_name(bound.host, bound.port)
        await self._listen("outbound", opts.outbound, OutboundListener(outbound_ctx, state))
        await self._listen("admin", opts.admin, AdminListener(self._pages(), opts.admin.host))
        if opts.metrics is not None:
            page = self._pages()["/metrics"]
            scrape = ScrapeListener(page, opts.metrics_token_sha256)
            await self._listen("metrics", opts.metrics, scrape)
            self.metrics.gauges.append(scrape.render_refused)
        own = {(a.host, a.port) for a in self.addresses.values()}
        outbound_ctx.own_addresses = inbound_ctx.own_addresses = own
        self.clusters.client_context = self.tls.client_context
        if self.identity is not None:
            from trellis.proxy.identity.agent import channel_options

            self._xds = AdsClient(
                opts.control,
                opts.node(),
                state,
                channel_credentials=self.identity.credentials,
                channel_options=channel_options(),
            )
        else:
            self._xds = AdsClient(opts.control, opts.node(), state)
        state.bind(self._xds.subscribe)
        self._xds.subscribe(LISTENER_TYPE, [self.inbound_name, OUTBOUND_DEFAULT_LISTENER])
        await self._xds.__aenter__()
        await self._start_live()
        self.tracing.start(self.inbound_name)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _start_live(self) -> None:
        from trellis.telemetry_api import telemetry_pb2

        opts = self.options
        hello = telemetry_pb2.Hello(
            node_id=opts.node_id,
            workload=opts.workload,
            namespace=opts.namespace,
            service=self.service,
        )
        source = SignalsSource(self.metrics, self.service)
        if self.identity is not None:
            from trellis.proxy.identity.agent import channel_options

            self.live = TelemetryClient(
                opts.control,
                hello,
                source,
                self.taps,
                credentials=self.identity.credentials,
                channel_options=channel_options(),
            )
        else:
            self.live = TelemetryClient(opts.control, hello, source, self.taps)
        await self.live.__aenter__()

    def _install_tap(self, tap: Any) -> None:
        self.recorder.tap = tap

    def _trace_with_identity(self, identity: IdentityAgent) -> None:
        """Spans name our SPIFFE ID and go to the control plane over ADS's credentials."""
        from trellis.proxy.identity.agent import channel_options

        def use(svid: Any) -> None:
            self.tracing.use_identity(
                svid.spiffe_id, svid.serial, identity.credentials, channel_options()
            )

        identity.on_rotate(use)
        if identity.svid is not None:
            use(identity.svid)

    async def _sweep(self) -> None:
        """Once a second: late request heads (408), idle client connections and idle
        upstream connections are closed."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conns in self.connections.values():
                for conn in list(conns):
                    conn.sweep(now)
            self.clusters.sweep(loop.time())

    def _listen_inbound(self, address: Address, handler: RequestHandler) -> None:
        """The inbound listener accepts itself: mTLS or plaintext per connection (Acceptor)."""
        registry = self.connections["inbound"]
        try:
            sock = socket.create_server(
                (address.host, address.port),
                family=socket.AF_INET6 if ":" in address.host else socket.AF_INET,
                backlog=1024,
            )
        except OSError as e:
            if not (self.options.pick_free_ports and e.errno == errno.EADDRINUSE):
                raise OSError(f"cannot listen on {address} (inbound): {e.strerror or e}") from None
            log.info("inbound port %s taken: picking a free one", address)
            self._listen_inbound(Address(address.host, 0), handler)
            return
        factory = connection_factory(handler, registry, self.options.timeouts)
        self.acceptor = Acceptor(sock, factory, self._tls_policy)
        self.acceptor.start()
        self.addresses["inbound"] = Address(address.host, int(sock.getsockname()[1]))

    def _tls_policy(self) -> tuple[TlsMode, ServerTls | None]:
        """The inbound mode the control plane asks for now, and the TLS to serve it."""
        listener = self.state.listeners.get(self.inbound_name)
        mode: TlsMode = listener.tls if listener is not None else "DISABLE"
        return mode, self.tls.server

    async def _listen(self, name: str, address: Address, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        registry = self.connections[name]
        try:
            server = await loop.create_server(
                connection_factory(handler, registry, self.options.timeouts),
                address.host,
                address.port,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as e:
            if not (self.options.pick_free_ports and e.errno == errno.EADDRINUSE):
                raise OSError(f"cannot listen on {address} ({name}): {e.strerror or e}") from None
            log.info("%s port %s taken: picking a free one", name, address)
            await self._listen(name, Address(address.host, 0), handler)
            return
        self._servers.append(server)
        sock = server.sockets[0].getsockname()
        self.addresses[name] = Address(address.host, int(sock[1]))

    def ready(self) -> tuple[bool, str]:
        """(ready?, why not)."""
        state = self.state
        listener = state.listeners.get(self.inbound_name)
        if listener is None:
            return False, f"waiting for {self.inbound_name}"
        if OUTBOUND_DEFAULT_LISTENER not in state.listeners:
            return False, f"waiting for {OUTBOUND_DEFAULT_LISTENER}"
        if listener.routes is not None:
            for name in listener.routes.clusters():
                if self.clusters.get(name) is None:
                    return False, f"waiting for cluster {name}"
        return True, ""

    async def wait_ready(self, timeout: float) -> None:
        """Return once ready; TimeoutError with the reason after `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            ok, why = self.ready()
            if ok:
                return
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.wait_changed(), min(left, 0.5))

    def in_flight(self) -> int:
        return sum(
            1
            for name in ("outbound", "inbound")
            for conn in self.connections[name]
            if conn.exchange is not None
        )

    async def quiesce(self, limit: float, quiet: float = QUIET_AFTER_DEREGISTER) -> float:
        """After deregistering: keep serving while callers still send (their sidecars
        have not all heard that this endpoint left: Istio's terminationDrainDuration),
        until no request has come in for `quiet` seconds, or for at most `limit`.
        Returns how long it waited. A sidecar nobody is calling returns at once."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            conns = self.connections["inbound"]
            last = max((c.last_request_at() for c in conns), default=0.0)
            if time.monotonic() - last >= quiet:
                break
            await asyncio.sleep(0.05)
        return time.monotonic() - start

    async def drain(self, timeout: float) -> int:
        """Stop accepting, wait for requests in flight (up to `timeout`); returns how many
        were still in flight at the deadline."""
        for server in self._servers:
            server.close()
        if self.acceptor is not None:
            self.acceptor.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for name in ("outbound", "inbound", "admin", "metrics"):
                for conn in list(self.connections[name]):
                    if conn.exchange is None:
                        conn.close()
            left = self.in_flight()
            if left == 0 or loop.time() >= deadline:
                return left
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for server in self._servers:
            server.close()
        if self.acceptor is not None:
            self.acceptor.close()
        if self.identity is not None:
            await self.identity.aclose()
        for conns in self.connections.values():
            for conn in list(conns):
                conn.abort()
        if self.live is not None:
            await self.live.aclose()
        if self._xds is not None:
            await self._xds.aclose()
        await self.tracing.aclose()
        self.clusters.close()
        if self._access_log is not None and self.options.access_log not in ("", "-"):
            self._access_log.close()

    async def __aenter__(self) -> ProxyApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- admin pages ----------------------------------------------------------------------

    def _pages(self) -> dict[str, Any]:
        def ready() -> tuple[int, str, bytes]:
            ok, why = self.ready()
            return (
                (200, "text/plain; charset=utf-8", b"ready\n")
                if ok
                else (
                    503,
                    "text/plain; charset=utf-8",
                    f"not ready: {why}\n".encode(),
                )
            )

        def metrics() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render().encode()

        return {
            "/ready": ready,
            "/config_dump": json_page(self.state.dump),
            "/clusters": json_page(self.clusters.statistics),
            "/metrics": metrics,
            "/stats": json_page(self.statistics),
        }

    def statistics(self) -> dict[str, Any]:
        ok, why = self.ready()
        return {
            "node": self.options.node_id,
            "ready": ok,
            "not_ready_reason": why or None,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "hot_path": compiled.describe(),
            "listeners": {name: str(a) for name, a in self.addresses.items()},
            "inbound_listener": self.inbound_name,
            "connections": {name: len(c) for name, c in self.connections.items()},
            "in_flight": self.in_flight(),
            "faults": dict(FAULTS.counts),
            "tracing": self.tracing.statistics(),
            "xds": self._xds.statistics() if self._xds is not None else None,
            "telemetry": self.live.statistics() if self.live is not None else None,
            "identity": self.identity.statistics() if self.identity is not None else None,
            "inbound_acceptor": self.acceptor.statistics() if self.acceptor is not None else None,
        }

    def _connection_gauges(self) -> list[str]:
        lines = [
            "# HELP trellis_upstream_connections Open upstream connections, by cluster.",
            "# TYPE trellis_upstream_connections gauge",
        ]
        totals = [
            "# HELP trellis_upstream_connections_opened_total Upstream connections opened.",
            "# TYPE trellis_upstream_connections_opened_total counter",
        ]
        for name, cluster in sorted(self.clusters.clusters.items()):
            lines.append(
                f'trellis_upstream_connections{{cluster="{name}"}} {cluster.counters.active}'
            )
            totals.append(
                f'trellis_upstream_connections_opened_total{{cluster="{name}"}}'
                f" {cluster.counters.opened}"
            )
        lines += [
            "# HELP trellis_downstream_connections Open downstream connections, by listener.",
            "# TYPE trellis_downstream_connections gauge",
        ]
        for name, conns in self.connections.items():
            lines.append(f'trellis_downstream_connections{{listener="{name}"}} {len(conns)}')
        return lines + totals
