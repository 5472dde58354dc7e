"""The writer's queue: markers coalesce, an ACK/NACK voids the marker before it, order holds."""

from __future__ import annotations

import asyncio

from envoy.service.discovery.v3 import discovery_pb2

from trellis.proxy.xds import CLUSTER_TYPE, LISTENER_TYPE
from trellis.proxy.xds.client import _Outbox


def drain(outbox: _Outbox) -> list[str]:
    out = []
    while (item := outbox.get_nowait()) is not None:
        out.append(item if isinstance(item, str) else f"request {item.response_nonce}")
    return out


def ack(type_url: str, nonce: str) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(type_url=type_url, response_nonce=nonce)


def test_markers_for_one_type_coalesce() -> None:
    outbox = _Outbox()
    for type_url in (LISTENER_TYPE, CLUSTER_TYPE, LISTENER_TYPE, LISTENER_TYPE):
        outbox.put_type(type_url)
    assert drain(outbox) == [LISTENER_TYPE, CLUSTER_TYPE]
    outbox.put_type(LISTENER_TYPE)  # after being taken, a new change queues again
    assert drain(outbox) == [LISTENER_TYPE]


def test_an_ack_voids_the_marker_queued_before_it() -> None:
    outbox = _Outbox()
    outbox.put_type(CLUSTER_TYPE)
    outbox.put_type(LISTENER_TYPE)
    outbox.put_request(ack(CLUSTER_TYPE, "1"))
    assert drain(outbox) == [LISTENER_TYPE, "request 1"]


def test_a_change_after_an_ack_goes_behind_it() -> None:
    outbox = _Outbox()
    outbox.put_type(CLUSTER_TYPE)
    outbox.put_request(ack(CLUSTER_TYPE, "1"))
    outbox.put_type(CLUSTER_TYPE)  # must not revive the first marker, ahead of the ACK
    assert drain(outbox) == ["request 1", CLUSTER_TYPE]


async def test_get_waits_for_an_item() -> None:
    outbox = _Outbox()
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)  # let it block on the empty queue
    assert not getter.done()
    outbox.put_request(ack(LISTENER_TYPE, "2"))
    item = await asyncio.wait_for(getter, 5)
    assert not isinstance(item, str) and item.response_nonce == "2"
