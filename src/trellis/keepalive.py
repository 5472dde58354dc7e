"""gRPC keepalive between the control plane and its clients: the server's ping policy and
every client's ping interval, in one place, so that the two sides agree.

gRPC core's rules (doc/keepalive.md; chttp2's ping_abuse_policy.cc): a server counts a
*ping strike* for each HTTP/2 PING that arrives sooner than
`grpc.http2.min_ping_interval_without_data_ms` after the previous one while it has sent
no data or headers (two hours, whatever that setting says, while no call is open,
unless `grpc.keepalive_permit_without_calls`); sending data or headers clears the
strikes. One strike more than `grpc.http2.max_ping_strikes` and the server sends GOAWAY
ENHANCE_YOUR_CALM "too_many_pings" and closes the connection; the client sees
UNAVAILABLE "Too many pings", reconnects and doubles its keepalive time. gRPC's defaults
(5 minutes, 2 strikes, no pings without calls) do that to a client that pings every
30 s on a quiet ADS stream within a few pings. A misspelt option name is ignored
without a word, so the names below are grpc core's (include/grpc/impl/channel_arg_names.h).

The control plane's clients and how often they ping:
- a sidecar's ADS client (trellis.proxy.xds.client): `SIDECAR_ADS`, every 30 s;
- a proxyless grpcio app (and `trellis run --proxyless`'s app): grpc core's xDS client
  pings every 5 minutes, a fixed value (src/core/xds/grpc/xds_transport_grpc.cc):
  `GRPC_CORE_XDS`;
- the CA clients (the sidecar's and `trellis run`'s IdentityAgent): short unary calls,
  no keepalive pings;
- the CLI and `trellis run`'s registration speak HTTP to the REST API, not gRPC.
Every client pings at least `MARGIN` times less often than the server allows (a test
checks it), so timer jitter never makes a strike.

Owns the numbers and the option lists; knows no server or channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# grpc core's channel argument names.
MIN_RECV_PING_INTERVAL: Final = "grpc.http2.min_ping_interval_without_data_ms"
MAX_PING_STRIKES: Final = "grpc.http2.max_ping_strikes"
PERMIT_WITHOUT_CALLS: Final = "grpc.keepalive_permit_without_calls"
KEEPALIVE_TIME: Final = "grpc.keepalive_time_ms"
KEEPALIVE_TIMEOUT: Final = "grpc.keepalive_timeout_ms"
MAX_PINGS_WITHOUT_DATA: Final = "grpc.http2.max_pings_without_data"

MARGIN: Final = 2  # a client's interval over the server's minimum, at least


@dataclass(frozen=True, slots=True)
class ServerPingPolicy:
    """What the control plane's gRPC servers (both ports) accept from a client."""

    min_ping_interval_ms: int = 10_000
    max_ping_strikes: int = 2  # gRPC's default: a client that pings too often is cut off
    permit_without_calls: bool = True  # a proxy between two streams may still ping

    def grpc_options(self) -> list[tuple[str, int]]:
        return [
            (MIN_RECV_PING_INTERVAL, self.min_ping_interval_ms),
            (MAX_PING_STRIKES, self.max_ping_strikes),
            (PERMIT_WITHOUT_CALLS, int(self.permit_without_calls)),
        ]

    def permits(self, client: ClientKeepalive) -> bool:
        """`client` never earns a strike, with `MARGIN` to spare."""
        return client.time_ms >= MARGIN * self.min_ping_interval_ms and (
            self.permit_without_calls or not client.permit_without_calls
        )


@dataclass(frozen=True, slots=True)
class ClientKeepalive:
    """How often a client of the control plane pings, and how long it waits for the answer."""

    time_ms: int
    timeout_ms: int
    permit_without_calls: bool = False

    def grpc_options(self) -> list[tuple[str, int]]:
        return [
            (KEEPALIVE_TIME, self.time_ms),
            (KEEPALIVE_TIMEOUT, self.timeout_ms),
            # Keep pinging on a stream where nothing moves for hours (gRPC stops after 2).
            (MAX_PINGS_WITHOUT_DATA, 0),
            (PERMIT_WITHOUT_CALLS, int(self.permit_without_calls)),
        ]


SERVER: Final = ServerPingPolicy()
# A sidecar notices a silently dead control plane within ~40 s (ping + timeout).
SIDECAR_ADS: Final = ClientKeepalive(time_ms=30_000, timeout_ms=10_000)
# Not ours to set: grpc core's xDS client, in every proxyless app (its timeout: the default).
GRPC_CORE_XDS: Final = ClientKeepalive(time_ms=300_000, timeout_ms=20_000)
CLIENTS: Final = {"sidecar ADS client": SIDECAR_ADS, "grpc core xDS client": GRPC_CORE_XDS}
