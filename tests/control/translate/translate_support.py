"""Helpers for translator tests: build a PushContext from YAML, run the generators."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from trellis.control.push.context import PushContext
from trellis.control.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Generated,
    NodeInfo,
    generate,
)
from trellis.model.loader import load_documents
from trellis.store.base import Lease, Snapshot

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "mesh.yaml"
GOLDEN = HERE / "golden"


def load_push(text: str, leases: Iterable[Lease] = (), now: float = 1000.0) -> PushContext:
    docs = load_documents(text)
    return PushContext.build(Snapshot(revision=1, docs=tuple(docs), leases=tuple(leases)), now)


def node(kind: str = "proxyless", namespace: str = "shop", workload: str = "client") -> NodeInfo:
    return NodeInfo.parse(f"{kind}~{workload}.{namespace}", {"namespace": namespace})


def gen(n: NodeInfo, push: PushContext, type_url: str, names: Iterable[str] | None) -> Generated:
    return generate(n, push, type_url, None if names is None else list(names))


def one(n: NodeInfo, push: PushContext, type_url: str, name: str) -> Any:
    """The single resource `name`; fails with the generator's reason if it is an error."""
    g = gen(n, push, type_url, [name])
    assert name in g.resources, g.errors
    return g.resources[name]


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def routes_of(n: NodeInfo, push: PushContext, rds_name: str) -> list[dict[str, Any]]:
    rc = as_dict(one(n, push, ROUTE_TYPE, rds_name))
    return list(rc["virtual_hosts"][0].get("routes", []))


def hcm_of(listener: Message) -> Any:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )

    hcm = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(hcm)  # type: ignore[attr-defined]
    return hcm


def inline_route_config(listener: Any) -> Any:
    """The inline RouteConfiguration of an inbound listener's first filter chain."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )

    hcm = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return hcm.route_config


def closure(n: NodeInfo, push: PushContext, listeners: Iterable[str]) -> dict[str, Generated]:
    """What a client subscribing to `listeners` ends up holding, as grpcio would follow it:
    LDS → the RDS names listeners point at → CDS names routes point at → EDS."""
    out: dict[str, Generated] = {}
    lds = gen(n, push, LISTENER_TYPE, listeners)
    out[LISTENER_TYPE] = lds
    outbound = [li for li in lds.resources.values() if li.HasField("api_listener")]
    rds_names = sorted({hcm_of(li).rds.route_config_name for li in outbound})
    rds = gen(n, push, ROUTE_TYPE, rds_names)
    out[ROUTE_TYPE] = rds
    clusters: set[str] = set()
    route_configs = list(rds.resources.values()) + [
        inline_route_config(li) for li in lds.resources.values() if li.filter_chains
    ]
    for rc in route_configs:
        for vh in rc.virtual_hosts:  # type: ignore[attr-defined]
            for r in vh.routes:
                if r.route.cluster:
                    clusters.add(r.route.cluster)
                clusters.update(w.name for w in r.route.weighted_clusters.clusters)
    cds = gen(n, push, CLUSTER_TYPE, sorted(clusters))
    out[CLUSTER_TYPE] = cds
    eds_names = sorted(c.eds_cluster_config.service_name for c in cds.resources.values())
    out[ENDPOINT_TYPE] = gen(n, push, ENDPOINT_TYPE, [e for e in eds_names if e])
    return out


def dump(result: dict[str, Generated]) -> str:
    """Stable JSON of every resource and error, per type."""
    doc = {
        type_url.rsplit(".", 1)[-1]: {
            "resources": {name: as_dict(msg) for name, msg in sorted(g.resources.items())},
            "errors": dict(sorted(g.errors.items())),
        }
        for type_url, g in result.items()
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
