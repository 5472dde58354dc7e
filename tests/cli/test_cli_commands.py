"""The real `trellis` CLI against a real `trellis control`: apply, get, delete, describe, status."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from tests.cli.control_plane import ControlPlane

from trellis.control.translate.api import CLUSTER_TYPE

MESH = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: apply-ns}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, protocol: grpc}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews-v2, namespace: apply-ns}
spec:
  selector: {app: reviews, version: v2}
  ports: [{port: 9080, protocol: grpc}]
"""

ROUTE = """\
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: split, namespace: apply-ns}
spec:
  parentRefs: [{name: reviews}]
  rules:
  - backendRefs:
    - {name: reviews, weight: 80}
    - {name: reviews-v2, weight: 20}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_first_start_prints_addresses_token_and_writes_the_cli_config(cp: ControlPlane) -> None:
    assert cp.banner[0].startswith("API listening on http://127.0.0.1:")
    assert cp.banner[1].startswith("xDS listening on 127.0.0.1:")
    assert cp.banner[2] == "admin token: cli-test-token"
    config = Path(cp.env["TRELLIS_CONFIG"])
    assert str(config) in cp.banner[3]
    assert json.loads(config.read_text()) == {"server": cp.api_url, "token": "cli-test-token"}
    assert config.stat().st_mode & 0o777 == 0o600
    data = cp.workdir / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "admin-token.sha256").stat().st_mode & 0o777 == 0o600
    assert "cli-test-token" not in (data / "admin-token.sha256").read_text()


def test_apply_get_and_dry_run(cp: ControlPlane, tmp_path: Path) -> None:
    write(tmp_path / "mesh" / "a-services.yaml", MESH)
    write(tmp_path / "mesh" / "b-route.yaml", ROUTE)
    first = cp.run("apply", "-f", str(tmp_path / "mesh"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "service/reviews created",
        "service/reviews-v2 created",
        "httproute/split created",
    ]
    again = cp.run("apply", "-f", str(tmp_path / "mesh"))
    assert again.stdout.splitlines()[0] == "service/reviews unchanged"

    changed = write(tmp_path / "changed.yaml", MESH.replace("port: 9080", "port: 9090", 1))
    dry = cp.run("apply", "-f", str(changed), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "service/reviews configured (dry run)" in dry.stdout.splitlines()

    table = cp.run("get", "svc", "-n", "apply-ns")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0][:3] == ["NAMESPACE", "NAME", "PORTS"]
    assert rows[-2][:4] == [
        "apply-ns",
        "reviews",
        "9080/grpc",
        "app=reviews",
    ]  # dry run changed nothing
    routes = cp.run("get", "routes", "-A")
    assert "reviews=80,reviews-v2=20" in routes.stdout

    one = cp.run("get", "services", "reviews", "-n", "apply-ns", "-o", "json")
    assert json.loads(one.stdout)["spec"]["ports"][0]["port"] == 9080
    as_yaml = cp.run("get", "service", "-n", "apply-ns", "-o", "yaml")
    docs = list(yaml.safe_load_all(as_yaml.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["reviews", "reviews-v2"]

    missing = cp.run("get", "svc", "nosuch")
    assert missing.returncode == 1 and "service/nosuch not found" in missing.stderr
    unknown = cp.run("get", "gateways")
    assert unknown.returncode == 1 and "unknown kind 'gateways'" in unknown.stderr


def test_apply_errors_name_file_line_and_field_and_change_nothing(
    cp: ControlPlane, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        MESH.replace("reviews, namespace: apply-ns", "bad-a, namespace: bad-ns")
        .replace("reviews-v2, namespace: apply-ns", "bad-b, namespace: bad-ns")
        .replace("port: 9080, protocol: grpc}]\n---", "port: -1, protocol: grpc}]\n---"),
    )
    r = cp.run("apply", "-f", str(bad))
    assert r.returncode == 1
    assert "1 invalid document, nothing applied" in r.stderr
    assert f"{bad}:6: Service bad-ns/bad-a: spec.ports[0].port: " in r.stderr
    assert "Traceback" not in r.stderr

    # A reference to an unknown service is found by the control plane: still file and line.
    ref = write(
        tmp_path / "ref.yaml",
        MESH.replace("apply-ns", "ref-ns")
        + "---\n"
        + ROUTE.replace("apply-ns", "ref-ns").replace("name: reviews-v2,", "name: nosuch,"),
    )
    r2 = cp.run("apply", "-f", str(ref))
    assert r2.returncode == 1
    assert (
        f"{ref}:15: HTTPRoute ref-ns/split: spec.rules[0].backendRefs[1]: "
        "unknown service ref-ns/nosuch" in r2.stderr
    )
    nothing = cp.run("get", "services", "-A", "-o", "json")
    names = {d["metadata"]["namespace"] for d in json.loads(nothing.stdout)["items"]}
    assert "bad-ns" not in names and "ref-ns" not in names


def test_delete_by_name_and_by_file(cp: ControlPlane, tmp_path: Path) -> None:
    manifest = write(tmp_path / "del.yaml", MESH.replace("apply-ns", "del-ns"))
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    dry = cp.run("delete", "svc", "reviews", "-n", "del-ns", "--dry-run")
    assert dry.stdout.strip() == "service/reviews deleted (dry run)"
    one = cp.run("delete", "service", "reviews", "-n", "del-ns")
    assert one.returncode == 0 and one.stdout.strip() == "service/reviews deleted"
    again = cp.run("delete", "service", "reviews", "-n", "del-ns")
    assert again.returncode == 1 and "not found" in again.stderr
    rest = cp.run("delete", "-f", str(manifest))
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.splitlines() == ["service/reviews not found", "service/reviews-v2 deleted"]
    assert "No services found" in cp.run("get", "svc", "-n", "del-ns").stderr


def test_describe_service(cp: ControlPlane, tmp_path: Path) -> None:
    wl = """\
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: reviews-1, namespace: desc-ns, labels: {app: reviews}}
spec: {address: 10.1.2.3, ports: [{port: 9080}], proxyless: true}
"""
    manifest = write(
        tmp_path / "d.yaml", (MESH + "---\n" + ROUTE).replace("apply-ns", "desc-ns") + wl
    )
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    r = cp.run("describe", "service", "reviews", "-n", "desc-ns")
    assert r.returncode == 0, r.stderr
    assert "Service:     desc-ns/reviews" in r.stdout
    assert "httproute/desc-ns/split (producer)" in r.stdout
    assert any(
        line.split()[:5] == ["reviews-1", "10.1.2.3", "9080", "9080", "yes"]
        for line in r.stdout.splitlines()
    )
    assert "static" in r.stdout
    missing = cp.run("describe", "service", "nosuch")
    assert missing.returncode == 1 and "not found" in missing.stderr


@contextmanager
def ads_node(xds: str, node_id: str, cluster: str) -> Iterator[None]:
    """Hold an ADS stream that subscribes to `cluster` and ACKs what it gets."""
    requests: queue.Queue[discovery_pb2.DiscoveryRequest | None] = queue.Queue()

    def outgoing() -> Iterator[discovery_pb2.DiscoveryRequest]:
        while (item := requests.get()) is not None:
            yield item

    channel = grpc.insecure_channel(xds)
    try:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        requests.put(
            discovery_pb2.DiscoveryRequest(
                node=base_pb2.Node(id=node_id), type_url=CLUSTER_TYPE, resource_names=[cluster]
            )
        )
        responses = stub.StreamAggregatedResources(outgoing())
        first = next(responses)
        requests.put(
            discovery_pb2.DiscoveryRequest(
                type_url=CLUSTER_TYPE,
                resource_names=[cluster],
                version_info=first.version_info,
                response_nonce=first.nonce,
            )
        )
        yield
        responses.cancel()
    finally:
        requests.put(None)  # ends the request iterator grpc's thread is reading
        channel.close()


def test_status_lists_connected_nodes(cp: ControlPlane, tmp_path: Path) -> None:
    empty = cp.run("status")
    assert empty.returncode == 0, empty.stderr
    manifest = write(tmp_path / "s.yaml", MESH.replace("apply-ns", "status-ns"))
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    cluster = "outbound|9080||reviews.status-ns.svc.mesh"
    with ads_node(cp.xds_address, "proxyless~web.status-ns", cluster):
        deadline = time.monotonic() + 10
        while True:
            r = cp.run("status")
            row = next(
                (line.split() for line in r.stdout.splitlines() if "proxyless~web" in line), None
            )
            if (row is not None and "ACKED" in row) or time.monotonic() > deadline:
                break
        assert row is not None, r.stdout
        assert row[0] == "proxyless~web.status-ns" and row[1] == "proxyless"
        assert "ACKED" in row, r.stdout
        as_json = json.loads(cp.run("status", "-o", "json").stdout)
        (n,) = [x for x in as_json["nodes"] if x["id"] == "proxyless~web.status-ns"]
        assert n["types"]["CDS"]["acked"] is True
        described = cp.run("describe", "service", "reviews", "-n", "status-ns")
        assert "proxyless~web.status-ns" in described.stdout


def test_unreachable_and_unauthorized_are_one_line_errors(cp: ControlPlane) -> None:
    down = cp.run("get", "services", "--server", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the control plane at http://127.0.0.1:9")
    assert "Traceback" not in down.stderr and len(down.stderr.strip().splitlines()) == 1
    env = {**cp.env, "TRELLIS_TOKEN": "wrong"}
    denied = cp.run("delete", "svc", "whatever", env=env)
    assert denied.returncode == 1 and "invalid admin token" in denied.stderr
