"""grpcio's own xDS client holds everything the proxyless generator sends: all ACKED.

A real ADS server (trellis.control.xds) serves `translate.generate` over a
mesh that uses every proxyless feature (header and method matches, weighted
clusters, retries, timeouts, faults, ring hash, round robin, least request,
circuit breakers, outlier detection, a dropped query match, a server
listener with DENY and ALLOW RBAC filters using every matcher the translator
emits). A real grpcio client process calls real grpc.aio backends through
`xds:///` names, then dumps its CSDS view: any NACK is a translator bug. The
call to the xDS server passes its RBAC filters (an ALLOW rule on its port and
the health service), so the filters are not only ACKed but also applied.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from grpc_health.v1 import health, health_pb2_grpc
from tests.control.translate.translate_support import load_push, node, one

from trellis.control.push.context import PushContext
from trellis.control.translate import LISTENER_TYPE
from trellis.control.translate.pb import ROUTER_FILTER
from trellis.control.xds import AdsServer
from trellis.ports import free_port

pytestmark = pytest.mark.integration

CLIENT = r"""
import json, os, sys, time, grpc
from concurrent import futures
from grpc_health.v1 import health
from grpc._cython import cygrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from envoy.service.status.v3 import csds_pb2
from envoy.admin.v3 import config_dump_shared_pb2 as dump_pb2

# A proxyless server (gRFC A36): it subscribes to trellis/inbound?address=127.0.0.1:PORT.
server_port = int(os.environ["SERVER_PORT"])
xds_server = grpc.server(futures.ThreadPoolExecutor(4), xds=True)
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), xds_server)
xds_server.add_insecure_port(f"127.0.0.1:{server_port}")
xds_server.start()
served = None
deadline = time.monotonic() + 20
with grpc.insecure_channel(f"127.0.0.1:{server_port}") as direct:
    while served is None and time.monotonic() < deadline:
        try:
            health_pb2_grpc.HealthStub(direct).Check(health_pb2.HealthCheckRequest(), timeout=2)
            served = True
        except grpc.RpcError:
            time.sleep(0.05)

results = [{"target": "xds-server", "ok": bool(served)}]
with grpc.insecure_channel(f"127.0.0.1:{server_port}") as direct:
    try:  # notPaths in the only ALLOW rule that matches: denied by the server's RBAC filter
        next(iter(health_pb2_grpc.HealthStub(direct).Watch(
            health_pb2.HealthCheckRequest(), timeout=5)))
        results.append({"target": "xds-server-watch", "ok": True})
    except grpc.RpcError as e:
        results.append({"target": "xds-server-watch", "ok": False, "code": e.code().name,
                        "details": e.details()})
channels = [grpc.insecure_channel(t) for t in sys.argv[1:]]  # open until the dump
for target, channel in zip(sys.argv[1:], channels):
    try:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=20,
            metadata=[("x-user", "u1"), ("x-canary", "1")])
        results.append({"target": target, "ok": True})
    except grpc.RpcError as e:
        results.append({"target": target, "ok": False, "code": e.code().name,
                        "details": e.details()})
status = csds_pb2.ClientStatusResponse.FromString(cygrpc.dump_xds_configs())
held = [
    {"type": c.type_url.rsplit(".", 1)[-1], "name": c.name,
     "status": dump_pb2.ClientResourceStatus.Name(c.client_status),
     "error": c.error_state.details}
    for config in status.config for c in config.generic_xds_configs
]
print(json.dumps({"calls": results, "held": held}), flush=True)
"""

MESH = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  defaults: {{timeouts: {{request: 30s}}, retry: {{codes: [503], attempts: 2, backoff: 10ms}}}}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: ratings, namespace: shop}}
spec:
  selector: {{app: ratings}}
  ports: [{{name: grpc, port: 50051, targetPort: grpc, protocol: grpc}}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: ratings-v2, namespace: shop}}
spec:
  selector: {{app: ratings, version: v2}}
  ports: [{{name: grpc, port: 50051, targetPort: grpc, protocol: grpc}}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: plain, namespace: shop}}
spec:
  selector: {{app: ratings, version: v1}}
  ports: [{{port: 80, targetPort: grpc}}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: v1, namespace: shop, labels: {{app: ratings, version: v1}}}}
spec:
  address: 127.0.0.1
  ports: [{{name: grpc, port: {port1}}}]
  proxyless: true
  locality: {{zone: a}}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: v2, namespace: shop, labels: {{app: ratings, version: v2}}}}
spec:
  address: 127.0.0.1
  ports: [{{name: grpc, port: {port2}}}]
  proxyless: true
  locality: {{zone: b}}
  weight: 3
---
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {{name: ratings, namespace: shop}}
spec:
  parentRefs: [{{name: ratings}}]
  rules:
    - matches:
        - method: {{service: grpc.health.v1.Health, method: Check}}
          headers: [{{name: x-canary, value: "1"}}]
      backendRefs: [{{name: ratings-v2}}]
      retry: {{codes: [UNAVAILABLE, CANCELLED], attempts: 4, backoff: 25ms}}
      timeouts: {{request: 10s}}
      fault: {{delay: {{fixedDelay: 1ms, percent: 1}}, abort: {{grpcStatus: 14, percent: 0}}}}
    - matches:
        - method: {{type: RegularExpression, service: 'grpc\\.health\\..*'}}
      backendRefs:
        - {{name: plain, weight: 1}}
        - {{name: ratings-v2, weight: 3}}
        - {{name: ratings, weight: 0}}
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: plain, namespace: shop}}
spec:
  parentRefs: [{{name: plain}}]
  rules:
    - matches:
        - {{queryParams: [{{name: q, value: x}}]}}
        - {{path: {{type: PathPrefix, value: /grpc.health.v1.Health}}}}
      retry: {{codes: [502, 503, 504, 500], attempts: 9}}
      timeouts: {{request: 5s, backendRequest: 1s}}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {{set: [{{name: x-a, value: b}}]}}
      backendRefs: [{{name: plain}}]
    - matches: [{{path: {{type: Exact, value: /zero}}}}]
      backendRefs: [{{name: plain, weight: 0}}]  # a direct_response 500
    - matches: [{{path: {{type: PathPrefix, value: /moved}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            scheme: https
            path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: v2, namespace: shop}}
spec:
  service: ratings-v2
  loadBalancer:
    type: RING_HASH
    ringHash: {{header: x-user, minimumRingSize: 64, maximumRingSize: 1024}}
  connectionPool: {{maxRequests: 100}}
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: plain, namespace: shop}}
spec:
  service: plain
  loadBalancer:
    type: ROUND_ROBIN
    healthyPanicThreshold: 30  # common_lb_config.healthy_panic_threshold
    localityLbSetting: {{enabled: true}}  # EDS priorities from the client's locality
  outlierDetection: {{consecutiveGatewayErrors: 5, failurePercentageThreshold: 80}}
  retryBudget: {{percent: 25}}  # Cluster metadata that grpcio ignores
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: client, namespace: shop, labels: {{app: client}}}}
spec: {{address: 127.0.0.1, proxyless: true, locality: {{region: r, zone: c}}}}
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: deny-forbidden, namespace: shop}}
spec:
  action: DENY
  rules:
    - to: [{{operation: {{paths: [/forbidden.Service/*, "*/Delete", /exact.Service/Get]}}}}]
      when:
        - {{key: "request.headers[x-user]", values: [blocked*, "*-bot", root], notValues: [admin]}}
        - {{key: "request.headers[grpc-trace-bin]", values: ["*"]}}  # refused by grpcio: dropped
    - from:
        - source:
            namespaces: ["*-prod", staging*, qa]
            notNamespaces: [shop]
            principals: ["*"]
            notPrincipals: [trellis.local/ns/shop/sa/admin, "*/sa/root", "spiffe://x/*"]
      to: [{{operation: {{methods: [DELETE, "P*", "*CH"], notMethods: [POST]}}}}]
    - when:
        - {{key: source.namespace, values: [nosuch]}}
        - {{key: source.principal, notValues: ["*"]}}
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: dry-run-deny-all, namespace: shop}}
spec:
  action: DENY
  dryRun: true  # proxyless servers get no dry-run policy: this must not deny the health check
  rules: [{{}}]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: allow-health, namespace: shop}}
spec:
  rules:
    - from: [{{source: {{principals: [trellis.local/ns/web/sa/frontend]}}}}]
    - to:
        - operation:
            ports: [{server_port}]
            paths: [/grpc.health.v1.Health/*]
            notPaths: [/grpc.health.v1.Health/Watch]
            methods: [POST]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: allow-nothing, namespace: shop}}
spec: {{}}
"""


@pytest.fixture
async def backends() -> AsyncIterator[tuple[int, int]]:
    servers, ports = [], []
    for _ in range(2):
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    yield ports[0], ports[1]
    for server in servers:
        await server.stop(grace=None)


async def test_grpcio_acks_every_proxyless_resource(
    backends: tuple[int, int], tmp_path: Path
) -> None:
    server_port = free_port()
    push = load_push(MESH.format(port1=backends[0], port2=backends[1], server_port=server_port))
    ads = AdsServer(push=push)
    server = grpc.aio.server()
    ads.register(server)
    ads_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{ads_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3", "ignore_resource_deletion"],
            }
        ],
        "node": {
            "id": "proxyless~client.shop",
            "metadata": {"kind": "proxyless", "namespace": "shop"},
        },
        "server_listener_resource_name_template": "trellis/inbound?address=%s",
    }
    (tmp_path / "bootstrap.json").write_text(json.dumps(bootstrap))
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.update(
        GRPC_XDS_BOOTSTRAP=str(tmp_path / "bootstrap.json"),
        GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING="true",
        grpc_proxy="",
        SERVER_PORT=str(server_port),
    )
    targets = ["xds:///ratings:50051", "xds:///ratings.shop", "xds:///plain", "xds:///nosuch"]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, *targets,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        await server.stop(grace=None)
    assert out.strip(), err.decode()[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    calls = {c["target"]: c for c in report["calls"]}
    assert calls["xds-server"]["ok"], err.decode()[-3000:]
    watch = calls["xds-server-watch"]
    assert watch["code"] == "PERMISSION_DENIED", (watch, err.decode()[-3000:])
    for target in targets[:3]:
        assert calls[target]["ok"], (calls[target], err.decode()[-3000:])
    assert not calls["xds:///nosuch"]["ok"]
    held = [h for h in report["held"] if h["name"] != "nosuch"]
    not_acked = [h for h in held if h["status"] != "ACKED"]
    assert not_acked == [], not_acked
    kinds = {h["type"] for h in held}
    assert kinds == {"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"}
    assert len(held) >= 12, held
    inbound = [h for h in held if h["name"].startswith("trellis/inbound?address=127.0.0.1:")]
    assert [h["status"] for h in inbound] == ["ACKED"], held
    inbound_filters = [
        f.name
        for f in inline_hcm(push, f"trellis/inbound?address=127.0.0.1:{server_port}").http_filters
    ]
    assert inbound_filters == ["trellis.authz.deny", "trellis.authz.allow", ROUTER_FILTER]


def inline_hcm(push: PushContext, name: str) -> Any:
    listener = one(node("proxyless", "shop", "client"), push, LISTENER_TYPE, name)
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return hcm
