"""Golden signals and live traffic from the proxies' telemetry streams (issue 10).

- `aggregate`: the pure aggregation (time buckets, edges, quantiles); no I/O, no clock.
- `stream`: the gRPC service `trellis.telemetry.v1.Telemetry/Stream` on both gRPC ports.
- `tap`: tap sessions, fanned out to the proxies and fanned in for the API.
"""
