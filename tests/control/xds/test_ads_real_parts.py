"""The ADS server with the real pieces around it: SqliteStore → PushController → translator.

A grpc.aio client walks the proxyless chain the way grpcio does
(LDS → RDS → CDS → EDS), then a new workload applied to the store reaches
it as a new EDS version, and nothing else is resent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from tests.control.xds.ads_world import AdsClient, unpack_all

from trellis.control.push.controller import PushController
from trellis.control.translate.api import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from trellis.control.xds import AdsServer
from trellis.model.loader import load_documents
from trellis.store.base import Put, Store
from trellis.store.sqlite import SqliteStore

RATINGS = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{port: 50051, protocol: grpc, targetPort: grpc}]
"""


def workload(name: str, port: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, labels: {{app: ratings}}}}
spec:
  address: 127.0.0.1
  ports: [{{name: grpc, port: {port}, protocol: grpc}}]
  proxyless: true
"""


def ports_of(cla: endpoint_pb2.ClusterLoadAssignment) -> list[int]:
    return sorted(
        lb.endpoint.address.socket_address.port_value
        for locality in cla.endpoints
        for lb in locality.lb_endpoints
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "state.db", poll_interval=0.05)
    await s.apply([Put(d) for d in load_documents(RATINGS + "---" + workload("r1", 50061))])
    yield s
    await s.aclose()


async def test_store_changes_reach_a_client_through_the_real_translator(store: Store) -> None:
    ads = AdsServer()
    server = grpc.aio.server()
    ads.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = AdsClient(channel, "proxyless~web.default", namespace="default")
    try:
        async with PushController(store, ads.push):
            lds = await client.subscribe(LISTENER_TYPE, ["ratings:50051", "nosuch:1"])
            await client.ack(lds, ["ratings:50051", "nosuch:1"])
            (lis,) = unpack_all(lds, listener_pb2.Listener)
            assert [e.resource_name.name for e in lds.resource_errors] == ["nosuch:1"]
            manager = hcm_pb2.HttpConnectionManager()
            assert lis.api_listener.api_listener.Unpack(manager)
            route_name = manager.rds.route_config_name

            rds = await client.subscribe(ROUTE_TYPE, [route_name])
            await client.ack(rds, [route_name])
            (rc,) = unpack_all(rds, route_pb2.RouteConfiguration)
            cluster_name = rc.virtual_hosts[0].routes[0].route.cluster
            assert cluster_name

            cds = await client.subscribe(CLUSTER_TYPE, [cluster_name])
            await client.ack(cds, [cluster_name])
            (cluster,) = unpack_all(cds, cluster_pb2.Cluster)
            eds_name = cluster.eds_cluster_config.service_name or cluster.name

            eds = await client.subscribe(ENDPOINT_TYPE, [eds_name])
            await client.ack(eds, [eds_name])
            (cla,) = unpack_all(eds, endpoint_pb2.ClusterLoadAssignment)
            assert ports_of(cla) == [50061]

            await store.apply([Put(d) for d in load_documents(workload("r2", 50062))])
            update = await client.recv()
            assert update.type_url == ENDPOINT_TYPE
            assert update.version_info != eds.version_info
            (cla,) = unpack_all(update, endpoint_pb2.ClusterLoadAssignment)
            assert ports_of(cla) == [50061, 50062]
            await client.ack(update, [eds_name])
            await client.expect_silence()  # LDS, RDS and CDS did not change: nothing resent

            (status,) = ads.nodes()
            for short in ("LDS", "RDS", "CDS", "EDS"):
                type_status = status.type(short)
                assert type_status is not None
                assert type_status.acked_version == type_status.sent_version, short
            assert ads.subscribers(cluster_name) == ["proxyless~web.default"]
    finally:
        await client.aclose()
        await channel.close()
        await server.stop(grace=None)
