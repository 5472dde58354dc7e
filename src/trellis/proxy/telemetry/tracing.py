"""ProxyTracing: the sidecar's tracing put together — the tracer its listeners share, the
exporter, and the config that drives both.

The config is the `tracing` of the proxy's inbound listener's HCM (every
listener of a sidecar carries the same, from MeshConfig; each is validated, and
refused as a whole when the proxy cannot honour it: config/tracing.py). No
tracing there: the proxy traces nothing and passes requests untouched.

Resource attributes: `service.name` (the config's `service_name`, else the
workload's canonical service, by Istio's rules as the metrics and golden signals
name it: recorder.py `Identity.of`), `service.namespace`,
`service.instance.id` (the node id), `trellis.workload`.
"""

from __future__ import annotations

from typing import Any

from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import LISTENER_TYPE
from trellis.proxy.options import ProxyOptions
from trellis.proxy.telemetry.export import ControlPlane, SpanExporter
from trellis.proxy.telemetry.otlpwire import resource_bytes
from trellis.proxy.telemetry.recorder import Identity
from trellis.proxy.telemetry.tracer import Tracer


def canonical_service(options: ProxyOptions) -> str:
    """The name the metrics, the golden signals and the callers' EDS metadata use."""
    return Identity.of(options.workload, options.namespace, options.labels).canonical_service


class ProxyTracing:
    def __init__(self, options: ProxyOptions, state: ConfigState) -> None:
        self.options = options
        self.state = state
        self.tracer = Tracer()
        self.inbound_name = ""
        self.credentials: Any = None  # a maker of the ADS channel credentials, when mTLS
        self.credentials_key: Any = None
        self.channel_options: list[tuple[str, Any]] = []
        self._service_name = ""
        self.exporter = SpanExporter(self.tracer.queue, self._resource(""), self._control_plane())
        state.watch(self._changed)

    def _resource(self, service_name: str) -> list[tuple[str, str]]:
        opts = self.options
        return [
            ("service.name", service_name or canonical_service(opts)),
            ("service.namespace", opts.namespace),
            ("service.instance.id", opts.node_id),
            ("trellis.workload", opts.workload),
        ]

    def _control_plane(self) -> ControlPlane:
        def where() -> tuple[str, object, Any, Any]:
            server = self.state.server or self.options.control[0]
            return server, self.credentials_key, self.credentials, self.channel_options

        return where

    def start(self, inbound_name: str) -> None:
        self.inbound_name = inbound_name
        self.exporter.start()
        self.apply()

    def _changed(self, type_url: str, names: frozenset[str]) -> None:
        if type_url == LISTENER_TYPE and self.inbound_name in names:
            self.apply()

    def apply(self) -> None:
        listener = self.state.listeners.get(self.inbound_name)
        config = listener.tracing if listener is not None else None
        if config is None:
            self.tracer.configure(False, 0.0)
            self.exporter.retarget(None)
            return
        if config.service_name != self._service_name:
            self._service_name = config.service_name
            self.exporter.resource = resource_bytes(self._resource(config.service_name))
        self.tracer.configure(True, config.sampling)
        self.exporter.retarget(config.target)

    def use_identity(
        self, spiffe_id: str, key: object, make: Any, options: list[tuple[str, Any]]
    ) -> None:
        """mTLS: our SPIFFE ID for spans, and the ADS credentials and channel options for
        the control plane."""
        self.tracer.principal = spiffe_id
        self.credentials_key = key
        self.credentials = make
        self.channel_options = options

    async def aclose(self) -> None:
        await self.exporter.aclose()

    def statistics(self) -> dict[str, Any]:
        return {**self.tracer.statistics(), **self.exporter.statistics()}

    def metric_lines(self) -> list[str]:
        queue, exporter = self.tracer.queue, self.exporter
        name = "trellis_tracing_spans_total"
        return [
            f"# HELP {name} Spans this proxy finished, by what became of them.",
            f"# TYPE {name} counter",
            f'{name}{{outcome="exported"}} {exporter.exported}',
            f'{name}{{outcome="rejected"}} {exporter.rejected}',
            f'{name}{{outcome="dropped_queue_full"}} {queue.dropped}',
            f'{name}{{outcome="dropped_export_failed"}} {exporter.failed}',
            "# HELP trellis_tracing_queue_spans Spans waiting for export.",
            "# TYPE trellis_tracing_queue_spans gauge",
            f"trellis_tracing_queue_spans {len(queue)}",
        ]
