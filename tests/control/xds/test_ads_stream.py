"""AdsStream without I/O: protocol corners that are awkward to reach over a socket."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from tests.control.translate.translate_support import FIXTURE, load_push
from tests.control.xds.ads_world import (
    assignment,
    cluster,
    generate_from_world,
    names_of,
    node_pb,
    route,
    world,
)

from trellis.control.translate import generate
from trellis.control.translate.api import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE
from trellis.control.xds import AdsStream, BadRequest
from trellis.control.xds.version import content_version

NODE = node_pb("sidecar~web.default")


def request(
    type_url: str,
    names: list[str],
    *,
    nonce: str = "",
    error: str | None = None,
    first: bool = False,
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names, response_nonce=nonce
    )
    if first:
        req.node.CopyFrom(NODE)
    if error is not None:
        req.error_detail.message = error
    return req


def new_stream(w: object) -> AdsStream:
    return AdsStream(generate_from_world, w)  # type: ignore[arg-type]


def test_an_empty_first_cds_request_is_a_wildcard() -> None:
    stream = new_stream(world(cds={"a": cluster("a"), "b": cluster("b")}))
    (response,) = stream.on_request(request(CLUSTER_TYPE, [], first=True))
    assert sorted(names_of(response)) == ["a", "b"]
    assert not response.resource_errors
    # A wildcard gets what exists: a deleted cluster leaves (no retention for wildcards).
    (after,) = stream.on_push(world(2, cds={"a": cluster("a")}))  # type: ignore[arg-type]
    assert names_of(after) == ["a"]
    status = stream.status()
    assert status is not None and status.types[0].names is None


def test_an_empty_rds_request_subscribes_to_nothing() -> None:
    stream = new_stream(world(rds={"r": route("r")}))
    (response,) = stream.on_request(request(ROUTE_TYPE, [], first=True))
    assert names_of(response) == []


def test_explicit_star_is_a_wildcard_for_any_type() -> None:
    stream = new_stream(world(eds={"a": assignment("a"), "b": assignment("b")}))
    (response,) = stream.on_request(request(ENDPOINT_TYPE, ["*"], first=True))
    assert len(response.resources) == 2


def test_a_nack_with_a_changed_subscription_is_answered() -> None:
    stream = new_stream(world(cds={"a": cluster("a"), "b": cluster("b")}))
    (first,) = stream.on_request(request(CLUSTER_TYPE, ["a"], first=True))
    (second,) = stream.on_request(request(CLUSTER_TYPE, ["a", "b"], nonce=first.nonce, error="x"))
    assert sorted(names_of(second)) == ["a", "b"]


def test_a_nack_without_a_changed_subscription_is_not_answered() -> None:
    stream = new_stream(world(cds={"a": cluster("a")}))
    (first,) = stream.on_request(request(CLUSTER_TYPE, ["a"], first=True))
    assert stream.on_request(request(CLUSTER_TYPE, ["a"], nonce=first.nonce, error="x")) == []
    assert stream.on_push(world(2, cds={"a": cluster("a")})) == []  # type: ignore[arg-type]


def test_the_node_is_needed_only_on_the_first_request() -> None:
    stream = new_stream(world(cds={"a": cluster("a")}, eds={"a": assignment("a")}))
    stream.on_request(request(CLUSTER_TYPE, ["a"], first=True))
    (eds,) = stream.on_request(request(ENDPOINT_TYPE, ["a"]))
    assert names_of(eds) == ["a"]


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request(CLUSTER_TYPE, ["a"]), "node.id"),
        (request("", ["a"], first=True), "type_url"),
    ],
)
def test_protocol_errors_raise_bad_request(
    req: discovery_pb2.DiscoveryRequest, reason: str
) -> None:
    with pytest.raises(BadRequest, match=reason):
        new_stream(world()).on_request(req)


def test_versions_ignore_order_and_see_every_change() -> None:
    a = world(cds={"a": cluster("a"), "b": cluster("b")})
    b = world(cds={"b": cluster("b"), "a": cluster("a")})
    s1, s2 = new_stream(a), new_stream(b)
    (r1,) = s1.on_request(request(CLUSTER_TYPE, ["a", "b"], first=True))
    (r2,) = s2.on_request(request(CLUSTER_TYPE, ["b", "a"], first=True))
    assert r1.version_info == r2.version_info
    assert content_version({}, ["x"]) != content_version({}, [])
    assert content_version({"a": r1.resources[0]}) != content_version({"b": r1.resources[0]})


def test_nodes_of_one_shape_share_a_version_hashed_once_per_push() -> None:
    push = load_push(FIXTURE.read_text())
    rds = ["reviews.shop.svc.mesh:9080"]

    def subscribed(
        node_id: str, namespace: str
    ) -> tuple[AdsStream, discovery_pb2.DiscoveryResponse]:
        stream = AdsStream(generate, push)
        req = discovery_pb2.DiscoveryRequest(type_url=ROUTE_TYPE, resource_names=rds)
        req.node.CopyFrom(node_pb(node_id, namespace=namespace))
        (response,) = stream.on_request(req)
        return stream, response

    _, first = subscribed("sidecar~a.shop", "shop")
    _, second = subscribed("sidecar~b.shop", "shop")
    _, other = subscribed("sidecar~c.web", "web")  # spells the service differently
    versions = [k for k in push.memo if isinstance(k, tuple) and k[0] == "version"]
    assert len(versions) == 2  # one per shape, not per node
    assert first.version_info == second.version_info != other.version_info
    for response in (first, second, other):
        by_name = {"reviews.shop.svc.mesh:9080": response.resources[0]}
        assert response.version_info == content_version(by_name)


def test_a_response_with_names_found_nowhere_keeps_no_version_in_the_memo() -> None:
    # Clients choose the names they ask for: what they make up must not stay in the push.
    push = load_push(FIXTURE.read_text())
    for i in range(20):
        stream = AdsStream(generate, push)
        names = ["reviews.shop.svc.mesh:9080", f"made-up-{i}.shop.svc.mesh:80"]
        req = discovery_pb2.DiscoveryRequest(type_url=ROUTE_TYPE, resource_names=names)
        req.node.CopyFrom(node_pb(f"sidecar~a{i}.shop", namespace="shop"))
        (response,) = stream.on_request(req)
        assert len(response.resources) == 1 and len(response.resource_errors) == 1
        sent = {"reviews.shop.svc.mesh:9080": response.resources[0]}
        assert response.version_info == content_version(sent, [names[1]])
    assert not [k for k in push.memo if isinstance(k, tuple) and k[0] == "version"]
