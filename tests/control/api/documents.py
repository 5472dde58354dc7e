"""Small builders of raw mesh documents (as clients send them) for the API tests."""

from __future__ import annotations

from typing import Any

API = "trellis.dev/v1alpha1"


def service(
    name: str, port: int = 9080, selector: dict[str, str] | None = None, ns: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": selector or {"app": name},
            "ports": [{"port": port, "protocol": "grpc"}],
        },
    }


def workload(
    name: str, labels: dict[str, str], port: int = 9080, address: str = "127.0.0.1"
) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Workload",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "address": address,
            "ports": [{"port": port, "protocol": "grpc"}],
            "proxyless": True,
        },
    }


def route(name: str, parent: str, backends: dict[str, int], **rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": parent}],
            "rules": [
                {"backendRefs": [{"name": b, "weight": w} for b, w in backends.items()], **rule}
            ],
        },
    }
