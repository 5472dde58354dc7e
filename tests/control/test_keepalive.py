"""The keepalive contract: every client of the control plane pings within its servers' policy.

A client that pings more often than the server permits is sent GOAWAY too_many_pings
and reconnects, over and over; a server option gRPC does not know is ignored without
a word (`grpc.http2.min_recv_ping_interval_without_data_ms` was, and left the 5-minute
default in force). So: the option names are grpc core's, the servers are built with the
policy, the clients with their keepalive, and every interval clears the minimum with
margin. tests/cli/test_xds_keepalive.py shows the mechanism on a real control plane.
"""

from __future__ import annotations

import pytest

from trellis import keepalive
from trellis.control.config import ControlConfig
from trellis.control.server import grpc_server_options
from trellis.proxy.identity.agent import channel_options as ca_client_options
from trellis.proxy.xds import client as ads_client

# The channel arguments grpc core reads (include/grpc/impl/channel_arg_names.h).
GRPC_CORE_ARGS = {
    "grpc.http2.min_ping_interval_without_data_ms",
    "grpc.http2.max_ping_strikes",
    "grpc.keepalive_permit_without_calls",
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.http2.max_pings_without_data",
    "grpc.max_receive_message_length",
    "grpc.so_reuseport",
    "grpc.use_local_subchannel_pool",
    "grpc.min_reconnect_backoff_ms",
    "grpc.initial_reconnect_backoff_ms",
    "grpc.ssl_target_name_override",
}


def test_the_servers_options_are_grpc_core_arguments() -> None:
    options = dict(grpc_server_options())
    assert set(options) <= GRPC_CORE_ARGS
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.http2.max_ping_strikes"] == 2
    assert options["grpc.keepalive_permit_without_calls"] == 1


def test_trellis_control_serves_the_shared_policy() -> None:
    assert ControlConfig().keepalive == keepalive.SERVER
    options = dict(grpc_server_options(ControlConfig().keepalive))
    assert dict(keepalive.SERVER.grpc_options()).items() <= options.items()


@pytest.mark.parametrize("name", sorted(keepalive.CLIENTS))
def test_every_client_pings_within_the_policy_with_margin(name: str) -> None:
    client = keepalive.CLIENTS[name]
    server = keepalive.SERVER
    assert keepalive.SERVER.permits(client)
    assert client.time_ms >= keepalive.MARGIN * server.min_ping_interval_ms
    assert set(dict(client.grpc_options())) <= GRPC_CORE_ARGS


def test_the_sidecar_ads_client_uses_its_keepalive() -> None:
    options = dict(ads_client._channel_options())
    assert options.items() >= dict(keepalive.SIDECAR_ADS.grpc_options()).items()
    assert set(options) <= GRPC_CORE_ARGS


def test_the_ca_clients_send_no_keepalive_pings() -> None:
    # IdentityAgent (sidecar and `trellis run --proxyless`): short unary Sign calls.
    options = dict(ca_client_options())
    assert "grpc.keepalive_time_ms" not in options
    assert set(options) <= GRPC_CORE_ARGS


def test_grpc_core_xds_client_keepalive_is_five_minutes() -> None:
    # Fixed in grpc core (src/core/xds/grpc/xds_transport_grpc.cc: Duration::Minutes(5)):
    # proxyless apps cannot change it, so the server's minimum must stay under half of it.
    assert keepalive.GRPC_CORE_XDS.time_ms == 5 * 60 * 1000


def test_a_policy_refuses_clients_that_ping_too_often() -> None:
    policy = keepalive.ServerPingPolicy(min_ping_interval_ms=10_000)
    assert not policy.permits(keepalive.ClientKeepalive(time_ms=15_000, timeout_ms=1))
    assert policy.permits(keepalive.ClientKeepalive(time_ms=20_000, timeout_ms=1))
    strict = keepalive.ServerPingPolicy(permit_without_calls=False)
    idle = keepalive.ClientKeepalive(time_ms=60_000, timeout_ms=1, permit_without_calls=True)
    assert not strict.permits(idle)
