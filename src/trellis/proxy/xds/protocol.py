"""The client side of ADS (state of the world, aggregated) as a sans-IO state machine.

Theory of operation (Envoy's client behaviour; the facts file's server rules):
- Per type URL a `TypeState` keeps what outlives a stream: the subscribed
  names, the version last ACKed, counters and the last NACK; and what belongs
  to the current stream: the latest nonce received and the names the server
  was last told.
- `stream_started()` forgets the per-stream part and returns the types to
  (re)subscribe: every type with names. Their requests carry the ACKed
  version and an empty nonce, which the control plane reads as "(re)subscribe".
- `subscription_request(type_url)` builds the request for a subscription
  change from the state *at the time it is written*: the full name set, the
  ACKed version, the latest nonce (empty before the first response). It
  returns None when the server already has that name set, so several
  `subscribe()` calls coalesce into one request. An empty name set is never
  the first request of a type on a stream (for LDS/CDS that means wildcard).
- `on_response(response, apply)` calls `apply` once with the whole response
  and returns exactly one request: ACK (version = the response's) or NACK
  (version = the last ACKed one, `error_detail` INVALID_ARGUMENT with the
  reason). One request per response: the client never loops.
- `outgoing(item)` turns what the transport dequeued into the request to
  write; the first request of each stream carries the node, later ones don't.

Knows nothing of gRPC, tasks, queues or clocks; `client.py` drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from trellis.proxy.xds.type_urls import short_name

# apply(type_url, version, resources, errors) -> None to ACK, or the NACK reason.
ApplyFn = Callable[[str, str, Sequence[any_pb2.Any], Mapping[str, str]], "str | None"]


class TypeState:
    """What the client knows about one resource type."""

    __slots__ = (
        "acked_version",
        "acks",
        "last_nack",
        "nacks",
        "names",
        "names_sent",
        "nonce",
        "requests",
        "responses",
        "type_url",
    )

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.names: frozenset[str] = frozenset()
        self.acked_version = ""  # "" until the first ACK
        self.last_nack: dict[str, str] | None = None  # {"version", "nonce", "message"}
        # Per stream: the latest nonce received ("" before the first response) and the
        # names the server was last told (None: nothing sent for this type yet).
        self.nonce = ""
        self.names_sent: frozenset[str] | None = None
        self.responses = 0
        self.acks = 0
        self.nacks = 0
        self.requests = 0

    def statistics(self) -> dict[str, Any]:
        return {
            "typeUrl": self.type_url,
            "names": sorted(self.names),
            "ackedVersion": self.acked_version,
            "nonce": self.nonce,
            "nacked": self.last_nack is not None and self.last_nack["nonce"] == self.nonce,
            "lastNack": dict(self.last_nack) if self.last_nack is not None else None,
            "responses": self.responses,
            "acks": self.acks,
            "nacks": self.nacks,
            "requests": self.requests,
        }


class AdsProtocol:
    """Subscriptions and ACK/NACK bookkeeping for one client, across its streams."""

    def __init__(self, node: base_pb2.Node) -> None:
        self._node = node
        self._types: dict[str, TypeState] = {}
        self._node_sent = True  # no stream yet

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(self, type_url: str, names: Iterable[str]) -> bool:
        """Add `names`; True when the subscription changed (a request should go out)."""
        state = self._state(type_url)
        new = state.names | _names(names)
        changed = new != state.names
        state.names = new
        return changed

    def unsubscribe(self, type_url: str, names: Iterable[str]) -> bool:
        """Remove `names`; True when the subscription changed."""
        state = self._types.get(type_url)
        if state is None:
            return False
        new = state.names - _names(names)
        changed = new != state.names
        state.names = new
        return changed

    def subscriptions(self, type_url: str) -> frozenset[str]:
        state = self._types.get(type_url)
        return state.names if state is not None else frozenset()

    # -- stream events ----------------------------------------------------------------------

    def stream_started(self) -> list[str]:
        """A new stream: forget nonces; the types to resubscribe, in first-subscribed order."""
        self._node_sent = False
        for state in self._types.values():
            state.nonce = ""
            state.names_sent = None
        return [t for t, state in self._types.items() if state.names]

    def subscription_request(self, type_url: str) -> discovery_pb2.DiscoveryRequest | None:
        """The request telling the server the current names, or None if it already knows them."""
        state = self._types.get(type_url)
        if state is None or state.names == state.names_sent:
            return None
        if not state.names and state.names_sent is None:
            return None  # an empty first request would be a wildcard subscription
        return _request(state, state.acked_version)

    def on_response(
        self, response: discovery_pb2.DiscoveryResponse, apply: ApplyFn
    ) -> discovery_pb2.DiscoveryRequest:
        """Apply one response through `apply`; returns its ACK or NACK (exactly one request)."""
        state = self._state(response.type_url)
        state.nonce = response.nonce
        state.responses += 1
        errors = {e.resource_name.name: e.error_detail.message for e in response.resource_errors}
        reason = apply(response.type_url, response.version_info, list(response.resources), errors)
        if reason is None:
            state.acked_version = response.version_info
            state.acks += 1
            return _request(state, state.acked_version)
        state.nacks += 1
        state.last_nack = {
            "version": response.version_info,
            "nonce": response.nonce,
            "message": reason,
        }
        request = _request(state, state.acked_version)
        request.error_detail.CopyFrom(
            status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=reason)
        )
        return request

    def outgoing(
        self, item: str | discovery_pb2.DiscoveryRequest
    ) -> discovery_pb2.DiscoveryRequest | None:
        """The request to write for a dequeued item (a type URL or a built request), or None.

        Records what the server is told; the first request of a stream gets the node.
        """
        request = self.subscription_request(item) if isinstance(item, str) else item
        if request is None:
            return None
        state = self._state(request.type_url)
        state.names_sent = frozenset(request.resource_names)
        state.requests += 1
        if not self._node_sent:
            request.node.CopyFrom(self._node)
            self._node_sent = True
        return request

    # -- queries ----------------------------------------------------------------------------

    def statistics(self) -> dict[str, dict[str, Any]]:
        """Per type, by short name (`LDS`...): names, ACKed version, nonce, NACK, counters."""
        return {short_name(t): state.statistics() for t, state in self._types.items()}

    def _state(self, type_url: str) -> TypeState:
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = TypeState(type_url)
        return state


def _names(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        raise TypeError(f"names must be an iterable of names, not the string {names!r}")
    return frozenset(names)


def _request(state: TypeState, version: str) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(
        type_url=state.type_url,
        version_info=version,
        response_nonce=state.nonce,
        resource_names=sorted(state.names),
    )
