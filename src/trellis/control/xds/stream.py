"""One ADS stream as a sans-IO state machine: requests and pushes in, responses out.

Theory of operation (state of the world, aggregated; the facts file's rules):
- The first request carries the node; `NodeInfo.parse` must accept it, else
  `BadRequest` (the server aborts the stream with INVALID_ARGUMENT).
- Per type URL the stream keeps a `TypeState`: subscribed names (None is a
  wildcard), the version and nonce last sent, what was sent by name, the
  version the client ACKed, the last NACK and the names answered as not found.
- A request with an empty `response_nonce` (re)subscribes: answer at once.
  A nonce other than the last one sent for that type is stale: ignore it.
  A matching nonce with `error_detail` is a NACK: record it and never send
  that version again (a later push brings a new one); a matching nonce
  without error is an ACK. After either, a changed subscription is answered
  at once.
- A push recomputes every subscribed type, in `TYPE_ORDER` (clusters and
  endpoints before listeners and routes: make-before-break), and sends those
  whose content version changed.
- A name the client subscribes to and was sent once is never dropped: when
  the generator no longer produces it, the last version sent goes out again
  (bootstraps list `ignore_resource_deletion`). A subscribed name that was
  never sent and is not generated is answered in `resource_errors` with
  NOT_FOUND, so grpcio fails fast instead of waiting 15 s.
- A generator exception is logged and changes nothing for that type: the
  client keeps the last good state and the next push tries again.

Knows nothing of gRPC transport, tasks or queues: `server.py` feeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2, status_pb2

from trellis.control.translate.api import CLUSTER_TYPE, LISTENER_TYPE, TYPE_ORDER, Generated
from trellis.control.translate.node import NodeInfo
from trellis.control.translate.pb import pack
from trellis.control.xds.status import NodeStatus, TypeStatus
from trellis.control.xds.version import content_version
from trellis.wire import short_name as short_type_name

if TYPE_CHECKING:
    from trellis.control.push.context import PushContext

log = logging.getLogger("trellis.xds")

GenerateFn = Callable[[NodeInfo, "PushContext", str, "Collection[str] | None"], Generated]

WILDCARD = "*"
# Legacy SotW: an empty first subscription to these types means "everything".
_LEGACY_WILDCARD_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
_CONTROL_PLANE = base_pb2.ControlPlane(identifier="trellis")


class BadRequest(Exception):
    """The client broke the protocol (bad node, no type URL): end the stream with this reason."""


@dataclass(frozen=True, slots=True)
class Nack:
    version: str  # the version the client rejected
    message: str  # its error_detail.message


class TypeState:
    """What one stream knows about one resource type."""

    __slots__ = (
        "acked_version",
        "nack",
        "names",
        "not_found",
        "sent",
        "sent_nonce",
        "sent_version",
        "type_url",
    )

    def __init__(self, type_url: str, names: frozenset[str] | None) -> None:
        self.type_url = type_url
        self.names = names  # None: wildcard
        self.sent_version = ""
        self.sent_nonce = ""
        self.sent: dict[str, any_pb2.Any] = {}  # name -> resource as last sent
        self.acked_version: str | None = None
        self.nack: Nack | None = None
        self.not_found: frozenset[str] = frozenset()

    def subscribes(self, name: str) -> bool:
        return name in self.sent if self.names is None else name in self.names

    def status(self) -> TypeStatus:
        return TypeStatus(
            type_url=self.type_url,
            names=None if self.names is None else tuple(sorted(self.names)),
            sent_version=self.sent_version,
            acked_version=self.acked_version,
            nacked=self.nack is not None,
            error=self.nack.message if self.nack is not None else None,
            not_found=tuple(sorted(self.not_found)),
        )


def _type_rank(type_url: str) -> tuple[int, str]:
    return (TYPE_ORDER.index(type_url) if type_url in TYPE_ORDER else len(TYPE_ORDER), type_url)


class AdsStream:
    """The protocol state of one ADS stream. Not thread-safe; one task drives it."""

    def __init__(
        self,
        generate: GenerateFn,
        push: PushContext,
        *,
        peer: str = "",
        connected_at: float = 0.0,
        secure: bool = False,
    ) -> None:
        self._generate = generate
        self._push = push
        self.peer = peer
        self.connected_at = connected_at
        # The stream came over the secure port with a mesh certificate bound to its node:
        # the node gets mTLS config (NodeInfo.secure).
        self.secure = secure
        self.node: NodeInfo | None = None
        self._types: dict[str, TypeState] = {}
        self._nonce = 0

    # -- inputs ---------------------------------------------------------------------------

    def on_request(
        self, req: discovery_pb2.DiscoveryRequest
    ) -> list[discovery_pb2.DiscoveryResponse]:
        """Handle one request; returns the responses to send (zero or one). Raises BadRequest."""
        if self.node is None:
            node = parse_node(req)
            self.node = replace(node, secure=True) if self.secure else node
        type_url = req.type_url
        if not type_url:
            raise BadRequest("DiscoveryRequest.type_url is required on an aggregated stream")
        state = self._types.get(type_url)
        names = _subscription(req, type_url, first=state is None)
        if state is None:
            state = self._types[type_url] = TypeState(type_url, names)

        if not req.response_nonce:  # first subscribe, or resubscribe after a reconnect
            state.names = names
            return self._respond(state, force=True)
        if req.response_nonce != state.sent_nonce:
            log.debug(
                "%s %s stale nonce %s (latest %s): ignored",
                self.node.id,
                short_type_name(type_url),
                req.response_nonce,
                state.sent_nonce or "-",
            )
            return []

        changed = names != state.names
        state.names = names
        state.acked_version = req.version_info or None
        if req.HasField("error_detail"):
            state.nack = Nack(state.sent_version, req.error_detail.message)
            log.warning(
                "%s NACKed %s version %s (keeps %s): %s",
                self.node.id,
                short_type_name(type_url),
                state.sent_version,
                req.version_info or "nothing",
                req.error_detail.message,
            )
        else:
            state.nack = None
        return self._respond(state, force=False) if changed else []

    def on_push(self, push: PushContext) -> list[discovery_pb2.DiscoveryResponse]:
        """Adopt a new PushContext; returns a response for each subscribed type that changed."""
        self._push = push
        if self.node is None:
            return []
        responses: list[discovery_pb2.DiscoveryResponse] = []
        for type_url in sorted(self._types, key=_type_rank):
            responses.extend(self._respond(self._types[type_url], force=False))
        if responses:
            log.debug(
                "%s push %s: %s",
                self.node.id,
                getattr(push, "revision", "?"),
                ", ".join(f"{short_type_name(r.type_url)} v{r.version_info}" for r in responses),
            )
        return responses

    # -- queries --------------------------------------------------------------------------

    def status(self) -> NodeStatus | None:
        """None until the first request told who the node is."""
        if self.node is None:
            return None
        return NodeStatus(
            node_id=self.node.id,
            kind=self.node.kind,
            namespace=self.node.namespace,
            workload=self.node.workload,
            peer=self.peer,
            connected_at=self.connected_at,
            types=tuple(self._types[t].status() for t in sorted(self._types, key=_type_rank)),
        )

    def subscribes(self, name: str) -> bool:
        return any(state.subscribes(name) for state in self._types.values())

    # -- output ---------------------------------------------------------------------------

    def _respond(self, state: TypeState, *, force: bool) -> list[discovery_pb2.DiscoveryResponse]:
        assert self.node is not None
        try:
            generated = self._generate(self.node, self._push, state.type_url, state.names)
            packed = generated.packed
            resources = {
                name: packed.get(name) or pack(msg)
                for name, msg in generated.resources.items()
                if state.names is None or name in state.names
            }
        except Exception:
            log.exception(
                "%s: generating %s failed; the client keeps what it has",
                self.node.id,
                short_type_name(state.type_url),
            )
            return []

        errors: dict[str, str] = {}
        if state.names is not None:
            for name in sorted(state.names - resources.keys()):
                if name in state.sent:  # never drop what a client still subscribes to
                    resources[name] = state.sent[name]
                elif name != WILDCARD:
                    errors[name] = generated.errors.get(
                        name, f"{short_type_name(state.type_url)} resource {name!r} does not exist"
                    )

        version = self._version(state.type_url, resources, errors, generated.packed)
        if not force and version == state.sent_version:
            return []  # nothing new; after a NACK this also keeps the rejected version unsent

        self._nonce += 1
        state.sent_version = version
        state.sent_nonce = str(self._nonce)
        state.sent = resources
        state.not_found = frozenset(errors)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=state.type_url,
            nonce=state.sent_nonce,
            resources=[resources[name] for name in sorted(resources)],
            control_plane=_CONTROL_PLANE,
        )
        for name, reason in errors.items():
            response.resource_errors.add(
                resource_name=discovery_pb2.ResourceName(name=name),
                error_detail=status_pb2.Status(code=code_pb2.NOT_FOUND, message=reason),
            )
        return [response]

    def _version(
        self,
        type_url: str,
        resources: dict[str, any_pb2.Any],
        errors: dict[str, str],
        shared: dict[str, any_pb2.Any],
    ) -> str:
        """`content_version`, hashed once per push for every node that gets the very same
        shared resources (it was the largest part of a push's CPU after generation).

        Keyed by the resources' identities: the memo entry holds the objects, so while it
        lives no other object can take their ids. Not for a response with not-found names:
        clients choose those, and the memo must not keep what they make up."""
        if (
            errors
            or not shared
            or len(resources) != len(shared)
            or any(shared.get(name) is not packed for name, packed in resources.items())
        ):
            return content_version(resources, errors)  # some are this node's own
        names = tuple(sorted(resources))
        objects = tuple(resources[name] for name in names)
        key = ("version", type_url, names, tuple(map(id, objects)))
        push = self._push
        hit = push.memo.get(key)
        if isinstance(hit, tuple):
            return str(hit[0])
        version = content_version(resources)
        push.remember(key, (version, objects))
        return version


def parse_node(req: discovery_pb2.DiscoveryRequest) -> NodeInfo:
    """The node of a stream's first request; BadRequest when it is missing or malformed."""
    if not req.HasField("node") or not req.node.id:
        raise BadRequest("the first DiscoveryRequest of a stream must carry node.id")
    try:
        return NodeInfo.parse(req.node.id, MessageToDict(req.node.metadata))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _subscription(
    req: discovery_pb2.DiscoveryRequest, type_url: str, *, first: bool
) -> frozenset[str] | None:
    names = frozenset(req.resource_names)
    if WILDCARD in names or (not names and first and type_url in _LEGACY_WILDCARD_TYPES):
        return None
    return names
