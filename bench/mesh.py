"""The benchmark's mesh as plain documents (the REST API's JSON shape). Pure.

S services; each has two version Services (narrower selectors), one static
proxyless Workload per version, and a GRPCRoute splitting its traffic between
the versions. Service 0 is `greeter`, the one every simulated node calls.

Must not know how documents are sent or what is measured.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "trellis.dev/v1alpha1"
PORT = 50051
TARGET_SERVICE = "greeter"
LISTENER = f"{TARGET_SERVICE}:{PORT}"

Doc = dict[str, Any]


def service_name(i: int) -> str:
    return TARGET_SERVICE if i == 0 else f"svc-{i}"


def _service(name: str, selector: dict[str, str]) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [{"name": "grpc", "port": PORT, "targetPort": "grpc", "protocol": "grpc"}],
        },
    }


def _workload(name: str, labels: dict[str, str], port: int) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "address": "127.0.0.1",
            "ports": [{"name": "grpc", "port": port, "protocol": "grpc"}],
            "proxyless": True,
        },
    }


def split_route(service: str, canary_weight: int) -> Doc:
    """The GRPCRoute sending `canary_weight`% of `service`'s calls to v2, the rest to v1."""
    return {
        "apiVersion": API_VERSION,
        "kind": "GRPCRoute",
        "metadata": {"name": f"{service}-split"},
        "spec": {
            "parentRefs": [{"name": service, "port": PORT}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": f"{service}-v1", "port": PORT, "weight": 100 - canary_weight},
                        {"name": f"{service}-v2", "port": PORT, "weight": canary_weight},
                    ]
                }
            ],
        },
    }


def mesh(services: int) -> list[Doc]:
    """Every document of a mesh of `services` services, each with a 90/10 version split."""
    docs: list[Doc] = []
    for i in range(services):
        name = service_name(i)
        docs.append(_service(name, {"app": name}))
        for v, version in enumerate(("v1", "v2")):
            docs.append(_service(f"{name}-{version}", {"app": name, "version": version}))
            labels = {"app": name, "version": version}
            docs.append(_workload(f"{name}-{version}-0", labels, 40000 + 2 * i + v))
        docs.append(split_route(name, 10))
    return docs
