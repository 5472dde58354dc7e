"""The client's ADS bookkeeping without sockets: subscriptions, ACK/NACK, resubscribe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from tests.proxy.xds.control_plane import NODE_ID, sidecar_node

from trellis.proxy.xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE
from trellis.proxy.xds.protocol import AdsProtocol


def ack(
    type_url: str, version: str, resources: Sequence[any_pb2.Any], errors: Mapping[str, str]
) -> str | None:
    return None


def nack(
    type_url: str, version: str, resources: Sequence[any_pb2.Any], errors: Mapping[str, str]
) -> str | None:
    return "bad cluster"


def response(type_url: str, version: str, nonce: str) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse(type_url=type_url, version_info=version, nonce=nonce)


def connected() -> AdsProtocol:
    protocol = AdsProtocol(sidecar_node())
    protocol.stream_started()
    return protocol


def send(protocol: AdsProtocol, type_url: str) -> discovery_pb2.DiscoveryRequest:
    request = protocol.outgoing(type_url)
    assert request is not None
    return request


def test_first_request_of_a_type_has_no_version_and_no_nonce() -> None:
    protocol = connected()
    assert protocol.subscribe(LISTENER_TYPE, ["b:80", "a:80"])
    request = send(protocol, LISTENER_TYPE)
    assert request.type_url == LISTENER_TYPE
    assert list(request.resource_names) == ["a:80", "b:80"]
    assert request.version_info == ""
    assert request.response_nonce == ""


def test_the_node_goes_on_the_first_request_of_each_stream_only() -> None:
    protocol = connected()
    protocol.subscribe(LISTENER_TYPE, ["a:80"])
    protocol.subscribe(CLUSTER_TYPE, ["c"])
    first, second = send(protocol, LISTENER_TYPE), send(protocol, CLUSTER_TYPE)
    assert first.node.id == NODE_ID
    assert first.node.metadata.fields["kind"].string_value == "sidecar"
    assert not second.HasField("node")
    assert protocol.stream_started() == [LISTENER_TYPE, CLUSTER_TYPE]
    assert send(protocol, LISTENER_TYPE).node.id == NODE_ID


def test_subscription_changes_coalesce_into_one_request() -> None:
    protocol = connected()
    protocol.subscribe(LISTENER_TYPE, ["a:80"])
    protocol.subscribe(LISTENER_TYPE, ["b:80"])
    assert not protocol.subscribe(LISTENER_TYPE, ["a:80"])  # nothing new
    assert list(send(protocol, LISTENER_TYPE).resource_names) == ["a:80", "b:80"]
    assert protocol.outgoing(LISTENER_TYPE) is None  # the server knows these names already


def test_ack_carries_the_response_version_nonce_and_current_names() -> None:
    protocol = connected()
    protocol.subscribe(CLUSTER_TYPE, ["c"])
    send(protocol, CLUSTER_TYPE)
    request = protocol.on_response(response(CLUSTER_TYPE, "v1", "7"), ack)
    assert (request.version_info, request.response_nonce) == ("v1", "7")
    assert list(request.resource_names) == ["c"]
    assert not request.HasField("error_detail")
    # A later subscription change carries the ACKed version and the latest nonce.
    protocol.outgoing(request)
    protocol.subscribe(CLUSTER_TYPE, ["d"])
    change = send(protocol, CLUSTER_TYPE)
    assert (change.version_info, change.response_nonce) == ("v1", "7")
    assert list(change.resource_names) == ["c", "d"]


def test_nack_keeps_the_last_acked_version_and_says_why() -> None:
    protocol = connected()
    protocol.subscribe(CLUSTER_TYPE, ["c"])
    send(protocol, CLUSTER_TYPE)
    protocol.on_response(response(CLUSTER_TYPE, "v1", "1"), ack)
    request = protocol.on_response(response(CLUSTER_TYPE, "v2", "2"), nack)
    assert (request.version_info, request.response_nonce) == ("v1", "2")
    assert request.error_detail == status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="bad cluster"
    )
    stats = protocol.statistics()["CDS"]
    assert stats["ackedVersion"] == "v1"
    assert stats["nacked"] is True
    assert stats["lastNack"] == {"version": "v2", "nonce": "2", "message": "bad cluster"}
    assert (stats["responses"], stats["acks"], stats["nacks"]) == (2, 1, 1)


def test_a_nack_before_any_ack_sends_an_empty_version() -> None:
    protocol = connected()
    protocol.subscribe(CLUSTER_TYPE, ["c"])
    send(protocol, CLUSTER_TYPE)
    request = protocol.on_response(response(CLUSTER_TYPE, "v1", "1"), nack)
    assert request.version_info == ""


def test_errors_and_resources_reach_apply_whole() -> None:
    protocol = connected()
    protocol.subscribe(LISTENER_TYPE, ["a:80", "nosuch:1"])
    send(protocol, LISTENER_TYPE)
    res = response(LISTENER_TYPE, "v1", "1")
    res.resources.add(type_url=LISTENER_TYPE, value=b"")
    res.resource_errors.add(
        resource_name=discovery_pb2.ResourceName(name="nosuch:1"),
        error_detail=status_pb2.Status(code=code_pb2.NOT_FOUND, message="no such service"),
    )
    seen: list[tuple[str, str, int, dict[str, str]]] = []

    def apply(
        type_url: str, version: str, resources: Sequence[any_pb2.Any], errors: Mapping[str, str]
    ) -> str | None:
        seen.append((type_url, version, len(resources), dict(errors)))
        return None

    protocol.on_response(res, apply)
    assert seen == [(LISTENER_TYPE, "v1", 1, {"nosuch:1": "no such service"})]


def test_a_new_stream_resubscribes_with_acked_versions_and_empty_nonces() -> None:
    protocol = connected()
    protocol.subscribe(LISTENER_TYPE, ["a:80"])
    protocol.subscribe(ENDPOINT_TYPE, ["e"])
    for type_url, version in ((LISTENER_TYPE, "l1"), (ENDPOINT_TYPE, "e1")):
        send(protocol, type_url)
        protocol.outgoing(protocol.on_response(response(type_url, version, "9"), ack))
    protocol.unsubscribe(ENDPOINT_TYPE, ["e"])  # nothing left of EDS: not resubscribed
    assert protocol.stream_started() == [LISTENER_TYPE]
    request = send(protocol, LISTENER_TYPE)
    assert (request.version_info, request.response_nonce) == ("l1", "")
    assert protocol.outgoing(ENDPOINT_TYPE) is None  # an empty first request means wildcard


def test_unsubscribing_everything_after_a_request_tells_the_server() -> None:
    protocol = connected()
    protocol.subscribe(CLUSTER_TYPE, ["c"])
    send(protocol, CLUSTER_TYPE)
    assert protocol.unsubscribe(CLUSTER_TYPE, ["c", "never-subscribed"])
    assert list(send(protocol, CLUSTER_TYPE).resource_names) == []
    assert not protocol.unsubscribe(CLUSTER_TYPE, ["c"])
    assert not protocol.unsubscribe(ENDPOINT_TYPE, ["x"])
    assert protocol.subscriptions(CLUSTER_TYPE) == frozenset()
    assert protocol.subscriptions(ENDPOINT_TYPE) == frozenset()


def test_a_bare_string_is_not_a_list_of_names() -> None:
    protocol = connected()
    with pytest.raises(TypeError):
        protocol.subscribe(LISTENER_TYPE, "reviews:9080")
