"""grpcio's own xDS client against `trellis control`: real processes, real gRPC.

Each test starts a control plane, registers real grpcio backends as proxyless
Workloads through the registry API, and runs real grpcio clients with a
bootstrap naming the control plane (`grpc.insecure_channel("xds:///NAME")`).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.integration.harness import Mesh, calls_of, wait_for

SERVICES = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: greeter}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: grpc, protocol: grpc}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: greeter-v1}
spec:
  selector: {app: greeter, version: v1}
  ports: [{name: grpc, port: 50051, targetPort: grpc, protocol: grpc}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: greeter-v2}
spec:
  selector: {app: greeter, version: v2}
  ports: [{name: grpc, port: 50051, targetPort: grpc, protocol: grpc}]
"""

TARGET = "xds:///greeter:50051"


def split_route(v1: int, v2: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {{name: greeter-split}}
spec:
  parentRefs: [{{name: greeter, port: 50051}}]
  rules:
  - backendRefs:
    - {{name: greeter-v1, port: 50051, weight: {v1}}}
    - {{name: greeter-v2, port: 50051, weight: {v2}}}
"""


def two_versions(mesh: Mesh, ttl: float = 3.0) -> None:
    mesh.cp.apply(SERVICES)
    mesh.backend("greeter-a", {"app": "greeter", "version": "v1"}, ttl=ttl)
    mesh.backend("greeter-b", {"app": "greeter", "version": "v2"}, ttl=ttl)
    wait_for(lambda: len(mesh.cp.endpoints("greeter")) == 2, 10, "two greeter endpoints")


def assert_all_acked(summary: dict[str, object]) -> None:
    csds = summary["csds"]
    assert isinstance(csds, list) and csds, "the client holds no xDS resources"
    kinds = {entry["type"] for entry in csds}
    assert {"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} <= kinds, csds
    not_acked = [entry for entry in csds if entry["status"] != "ACKED"]
    assert not not_acked, f"resources not ACKED by grpcio (a control-plane bug): {not_acked}"


def test_round_robin_with_default_policy_is_acked(mesh: Mesh) -> None:
    two_versions(mesh)
    summary = mesh.run_client(
        TARGET, "--calls", "200", "--csds", "--wait-ready", "10", "--wait-peers", "2"
    )
    assert summary["errors"] == {}, summary
    peers = summary["peers"]
    assert set(peers) == {"greeter-a", "greeter-b"}, peers
    # grpcio runs round robin under the default policy (WrrLocality[LeastRequest, RoundRobin]).
    assert abs(peers["greeter-a"] - peers["greeter-b"]) <= 20, peers
    assert_all_acked(summary)


def test_status_shows_every_type_acked_by_a_connected_client(mesh: Mesh) -> None:
    two_versions(mesh)
    client = mesh.client(TARGET, "--duration", "30", "--interval", "0.05", "--stream")
    client.wait_line(lambda line: '"ok": true' in line, 20)

    def acked_node() -> dict[str, Any] | None:
        for node in mesh.cp.status()["nodes"]:
            types = node["types"]
            if node["id"] == "proxyless~client.default" and all(
                types.get(t, {}).get("acked") for t in ("LDS", "RDS", "CDS", "EDS")
            ):
                return dict(node)
        return None

    node = wait_for(acked_node, 10, "the client's node to ACK every type")
    assert node["kind"] == "proxyless"
    assert not any(t["nacked"] for t in node["types"].values()), node
    assert "greeter:50051" in node["types"]["LDS"]["names"]
    client.stop()


def test_weighted_split_80_20(mesh: Mesh) -> None:
    two_versions(mesh)
    mesh.cp.apply(split_route(80, 20))
    # ±5 points over 2000 calls: 5.6 standard deviations.
    summary = mesh.run_client(TARGET, "--calls", "2000", "--csds", "--wait-ready", "10")
    assert summary["errors"] == {}, summary
    share = summary["peers"].get("greeter-a", 0) / summary["calls"]
    assert 0.75 <= share <= 0.85, summary["peers"]
    assert_all_acked(summary)


def test_header_match_sends_only_matching_calls_to_canary(mesh: Mesh) -> None:
    two_versions(mesh)
    mesh.cp.apply("""
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {name: greeter-canary}
spec:
  parentRefs: [{name: greeter, port: 50051}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: greeter-v2, port: 50051}]
  - backendRefs: [{name: greeter-v1, port: 50051}]
""")
    canary = mesh.run_client(
        TARGET, "--calls", "100", "--header", "x-canary=yes", "--wait-ready", "10"
    )
    stable = mesh.run_client(
        TARGET, "--calls", "100", "--header", "x-canary=no", "--csds", "--wait-ready", "10"
    )
    assert canary["peers"] == {"greeter-b": 100}, canary
    assert stable["peers"] == {"greeter-a": 100}, stable
    assert_all_acked(stable)


def test_retry_on_unavailable_masks_a_backend_failing_first_attempts(mesh: Mesh) -> None:
    mesh.cp.apply(SERVICES)
    mesh.backend("greeter-flaky", {"app": "greeter", "version": "v1"}, fail_first=True)
    wait_for(lambda: len(mesh.cp.endpoints("greeter")) == 1, 10, "the flaky endpoint")
    without = mesh.run_client(TARGET, "--calls", "20", "--wait-ready", "10")
    assert without["errors"] == {"UNAVAILABLE": 20}, without
    mesh.cp.apply("""
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {name: greeter-retry}
spec:
  parentRefs: [{name: greeter, port: 50051}]
  rules:
  - backendRefs: [{name: greeter, port: 50051}]
    retry: {codes: [UNAVAILABLE], attempts: 2, backoff: 10ms}
""")
    with_retry = mesh.run_client(TARGET, "--calls", "200", "--csds", "--wait-ready", "10")
    assert with_retry["errors"] == {}, with_retry
    assert with_retry["peers"] == {"greeter-flaky": 200}
    assert_all_acked(with_retry)


def test_change_applied_while_client_runs_takes_effect_within_1s(mesh: Mesh) -> None:
    two_versions(mesh)
    mesh.cp.apply(split_route(100, 0))
    client = mesh.client(
        TARGET, "--duration", "10", "--interval", "0.005", "--stream", "--wait-ready", "10"
    )
    client.wait_line(lambda line: '"peer": "greeter-a"' in line, 20)
    time.sleep(
        1.5
    )  # let the client run on the first config: this is load, not a wait for a condition
    sent = time.time()
    mesh.cp.apply(split_route(0, 100))
    applied = time.time()  # the API answered: the change is stored, the push starts
    client.wait_line(lambda line: line.startswith('{"summary"'), 30)
    calls = list(calls_of(client))
    assert calls and all(c["ok"] for c in calls), [c for c in calls if not c["ok"]][:5]
    before = [c for c in calls if c["t"] < sent]
    after = [c for c in calls if c["t"] > applied + 1.0]
    assert before and all(c["peer"] == "greeter-a" for c in before)
    assert len(after) > 50 and all(c["peer"] == "greeter-b" for c in after), after[:5]


def test_backend_whose_heartbeats_stop_leaves_the_rotation(mesh: Mesh) -> None:
    mesh.cp.apply(SERVICES)
    a = mesh.backend("greeter-a", {"app": "greeter", "version": "v1"}, ttl=1.5)
    mesh.backend("greeter-b", {"app": "greeter", "version": "v1"}, ttl=1.5)
    wait_for(lambda: len(mesh.cp.endpoints("greeter")) == 2, 10, "two endpoints")
    first = mesh.run_client(TARGET, "--calls", "50", "--wait-ready", "10", "--wait-peers", "2")
    assert set(first["peers"]) == {"greeter-a", "greeter-b"}
    a.signal(signal.SIGUSR1)  # still serving, but no more heartbeats
    wait_for(
        lambda: [e["workload"] for e in mesh.cp.endpoints("greeter")] == ["greeter-b"],
        10,
        "greeter-a's lease to expire",
    )
    after = mesh.run_client(TARGET, "--calls", "50", "--wait-ready", "10")
    assert after["peers"] == {"greeter-b": 50}, after


def test_control_plane_restart_keeps_clients_serving(mesh: Mesh) -> None:
    two_versions(mesh)
    mesh.cp.apply(split_route(100, 0))
    client = mesh.client(
        TARGET, "--duration", "60", "--interval", "0.01", "--stream", "--wait-ready", "10"
    )
    client.wait_line(lambda line: '"peer": "greeter-a"' in line, 20)
    mesh.cp.kill()
    killed = time.time()
    # During the outage the client keeps serving from what it holds.
    client.wait_line(lambda line: line.startswith('{"t"') and _after(line, killed + 2.0), 10)
    mesh.cp.start()
    restarted = time.time()
    # The restarted control plane serves the endpoints it stored (no re-registration needed).
    names = sorted(e["workload"] for e in mesh.cp.endpoints("greeter"))
    assert names == ["greeter-a", "greeter-b"]
    mesh.cp.apply(split_route(0, 100))
    client.wait_line(lambda line: '"peer": "greeter-b"' in line, 20)
    moved = time.time()
    client.stop()
    calls = list(calls_of(client))
    failed = [c for c in calls if not c["ok"]]
    assert not failed, failed[:5]
    during = [c for c in calls if killed < c["t"] < restarted]
    assert len(during) > 20 and all(c["peer"] == "greeter-a" for c in during)
    late = [c for c in calls if c["t"] > moved]
    assert all(c["peer"] == "greeter-b" for c in late)


def _after(line: str, t: float) -> bool:
    import json

    return bool(json.loads(line)["t"] > t)


def test_unknown_service_fails_fast(mesh: Mesh) -> None:
    mesh.cp.apply(SERVICES)
    summary = mesh.run_client(
        "xds:///nosuch:50051", "--calls", "1", "--timeout", "20", fast_not_found=True
    )
    assert summary["errors"] == {"UNAVAILABLE": 1}, summary
    # Timed inside the client (an interpreter start on a slow machine is not the point):
    # far below grpcio's 15 s does-not-exist timer.
    assert summary["seconds"] < 5, f"{summary}: the client waited for its does-not-exist timer"
    assert "nosuch" in summary["first_error"], summary


@pytest.mark.parametrize("namespace", ["shop"])
def test_short_names_resolve_in_the_clients_namespace(mesh: Mesh, namespace: str) -> None:
    mesh.cp.apply(
        SERVICES.replace("metadata: {name: greeter}", "metadata: {name: greeter, namespace: shop}")
    )
    mesh.backend("greeter-shop", {"app": "greeter"}, namespace="shop")
    wait_for(lambda: len(mesh.cp.endpoints("greeter", "shop")) == 1, 10, "shop endpoint")
    in_shop = mesh.run_client(
        "xds:///greeter:50051", "--calls", "5", "--csds", namespace="shop", workload="c1"
    )
    assert in_shop["peers"] == {"greeter-shop": 5}, in_shop
    full = mesh.run_client(
        "xds:///greeter.shop.svc.mesh:50051", "--calls", "5", namespace="default", workload="c2"
    )
    assert full["peers"] == {"greeter-shop": 5}, full
    assert_all_acked(in_shop)
