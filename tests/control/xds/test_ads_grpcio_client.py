"""grpcio's own xDS client against the ADS server: it ACKs everything and fails fast on unknowns.

The server runs in this test's event loop with hand-built, grpcio-valid
resources; the client is a real subprocess using `xds:///` targets (the xDS
client is process-global, so it cannot share this process). The backend is
a real grpc.aio server with the standard health service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from grpc_health.v1 import health, health_pb2_grpc
from tests.control.xds.ads_world import generate_from_world, world

from trellis.control.xds import AdsServer

pytestmark = pytest.mark.integration

CLIENT = """
import json, sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
for target in sys.argv[1:]:
    start = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=20)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            result = {"target": target, "status": status}
        except grpc.RpcError as e:
            result = {"target": target, "code": e.code().name, "details": e.details()}
    result["seconds"] = time.monotonic() - start
    print(json.dumps(result), flush=True)
"""


def _ads() -> config_source_pb2.ConfigSource:
    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    source.ads.SetInParent()
    return source


def proxyless_world(backend_port: int) -> object:
    manager = hcm_pb2.HttpConnectionManager(
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name="svc-route")
    )
    manager.http_filters.add(name="router").typed_config.Pack(router_pb2.Router())
    lis = listener_pb2.Listener(name="svc")
    lis.api_listener.api_listener.Pack(manager)

    rc = route_pb2.RouteConfiguration(name="svc-route")
    rc.virtual_hosts.add(
        name="svc",
        domains=["*"],
        routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix=""),
                route=route_components_pb2.RouteAction(cluster="svc-cluster"),
            )
        ],
    )

    cluster = cluster_pb2.Cluster(
        name="svc-cluster", type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN
    )
    cluster.eds_cluster_config.eds_config.CopyFrom(_ads())
    cluster.connect_timeout.seconds = 1

    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="svc-cluster")
    locality = cla.endpoints.add()
    locality.load_balancing_weight.value = 1
    locality.locality.SetInParent()  # grpcio requires the field, even empty
    locality.lb_endpoints.add(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(
                    address="127.0.0.1", port_value=backend_port
                )
            )
        )
    )
    return world(
        lds={"svc": lis},
        rds={"svc-route": rc},
        cds={"svc-cluster": cluster},
        eds={"svc-cluster": cla},
    )


@pytest.fixture
async def backend_port() -> AsyncIterator[int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=None)


async def test_grpcio_acks_everything_and_fails_fast_on_an_unknown_name(
    backend_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ads = AdsServer(generate=generate_from_world, push=proxyless_world(backend_port))  # type: ignore[arg-type]
    server = grpc.aio.server()
    ads.register(server)
    ads_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": f"127.0.0.1:{ads_port}",
                        "channel_creds": [{"type": "insecure"}],
                        "server_features": ["xds_v3", "ignore_resource_deletion"],
                    }
                ],
                "node": {"id": "proxyless~client.default", "metadata": {"kind": "proxyless"}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.update(
        GRPC_XDS_BOOTSTRAP=str(bootstrap),
        GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING="true",
        grpc_proxy="",
    )
    try:
        with caplog.at_level(logging.INFO, logger="trellis.xds"):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, "xds:///svc", "xds:///nosuch",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        results = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        assert len(results) == 2, err.decode()[-2000:]
        served, unknown = results
        assert served.get("status") == "SERVING", (served, err.decode()[-2000:])
        assert unknown["code"] == "UNAVAILABLE"
        assert "nosuch" in unknown["details"]
        assert unknown["seconds"] < 5  # not the 15 s does-not-exist timer
        nacks = [r.getMessage() for r in caplog.records if "NACK" in r.getMessage()]
        assert nacks == []
        assert any(
            "xDS connect: proxyless~client.default" in r.getMessage() for r in caplog.records
        )
    finally:
        await server.stop(grace=None)
