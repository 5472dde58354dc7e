"""Who takes the request: the source's sidecar and each destination endpoint's sidecar.

Owns how `trellis explain` finds the node facts (NodeInfo) the control plane would
generate config for:
- a node connected over ADS is used as it is (its NodeInfo as its stream declared it,
  the inbound listener it subscribes to, the SPIFFE ID of its mesh certificate);
- else a registered Workload gives them (labels, ports, service account; mTLS when the
  Workload says it speaks it, as `trellis run` with an identity registers);
- else, for a source only, a sidecar as `trellis run --service NAME` would start it:
  labels `app: NAME`, service account NAME, with a mesh identity.
The source is `NAME`, `NAME.NAMESPACE` (a service: a connected node it selects, or whose
`app` label or workload is NAME) or a node id `KIND~WORKLOAD.NAMESPACE`.

Pure: the connected nodes are given; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from trellis.control.push.context import PushContext
from trellis.control.translate import NodeInfo
from trellis.control.translate.generators.mesh import workload_labels
from trellis.control.translate.names import INBOUND_LISTENER_PREFIX, inbound_listener_name
from trellis.model.base import selector_matches
from trellis.model.workload import Workload
from trellis.wire import SpiffeId


@dataclass(frozen=True, slots=True)
class ConnectedNode:
    """A node with an ADS stream: its facts, the listener names it subscribes to, and the
    SPIFFE ID of the mesh certificate bound to it (None: none)."""

    info: NodeInfo
    listeners: tuple[str, ...] = ()
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """A node as explained: its facts, where they come from, and its SPIFFE ID."""

    info: NodeInfo
    origin: str  # "connected" | "workload" | "assumed"
    principal: str  # its mesh identity ("" without one)
    address: str = ""  # where its connections come from (the Workload's address)
    inbound_listener: str = ""  # the name of its inbound listener
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        info = self.info
        return {
            "node": info.id,
            "kind": info.kind,
            "workload": info.workload,
            "namespace": info.namespace,
            "serviceAccount": info.service_account,
            "labels": dict(info.labels),
            "ports": list(info.ports),
            "identity": info.secure,
            "principal": self.principal or None,
            "from": self.origin,
            "notes": list(self.notes),
        }


def spiffe_id(push: PushContext, namespace: str, service_account: str) -> str:
    try:
        return str(SpiffeId(push.mesh.spec.trust_domain, namespace, service_account))
    except ValueError:
        return ""


def source_node(
    push: PushContext, name: str, namespace: str, connected: Sequence[ConnectedNode]
) -> Node:
    """The sidecar that takes the request first (see the module docstring)."""
    if "~" in name:
        return _by_node_id(push, name, connected)
    service, dot, ns = name.partition(".")
    namespace = ns if dot else namespace
    candidates = [
        c
        for c in connected
        if c.info.namespace == namespace
        and c.info.kind == "sidecar"
        and _is_of(push, c.info, service, namespace)
    ]
    if candidates:
        chosen = sorted(candidates, key=lambda c: c.info.id)[0]
        notes: tuple[str, ...] = ()
        if len(candidates) > 1:
            others = ", ".join(c.info.id for c in candidates if c is not chosen)
            notes = (f"{len(candidates)} nodes of {service} are connected; also {others}",)
        return _connected(push, chosen, notes)
    svc = push.service(namespace, service)
    if svc is not None:
        members = sorted(
            (w for w in push.workloads.values() if w.namespace == namespace),
            key=lambda w: w.name,
        )
        for w in members:
            if w.spec.inbound is not None and selector_matches(
                svc.spec.selector, dict(w.metadata.labels)
            ):
                return from_workload(push, w, note=f"no node of {service} is connected")
    info = NodeInfo(
        id=f"sidecar~{service}.{namespace}",
        kind="sidecar",
        workload=service,
        namespace=namespace,
        service_account=service,
        labels={"app": service},
        secure=True,
    )
    note = (
        f"no node or sidecar workload of {service} in namespace {namespace}: explained for a"
        f" sidecar as `trellis run --service {service}` would start it (labels app={service},"
        " with a mesh identity)"
    )
    return Node(info, "assumed", spiffe_id(push, namespace, service), notes=(note,))


def _by_node_id(push: PushContext, node_id: str, connected: Sequence[ConnectedNode]) -> Node:
    for c in connected:
        if c.info.id == node_id:
            return _connected(push, c, ())
    try:
        parsed = NodeInfo.parse(node_id, {})
    except ValueError as e:
        raise LookupError(str(e)) from None
    workload = push.workload(parsed.namespace, parsed.workload)
    if workload is None:
        raise LookupError(f"node {node_id} is not connected and no Workload has its name")
    return from_workload(push, workload, note=f"node {node_id} is not connected")


def _is_of(push: PushContext, info: NodeInfo, service: str, namespace: str) -> bool:
    """Whether a node is a sidecar of `service`: selected by it, or named after it."""
    labels = workload_labels(info, push)
    svc = push.service(namespace, service)
    if svc is not None and svc.spec.selector and selector_matches(svc.spec.selector, dict(labels)):
        return True
    return labels.get("app") == service or info.workload == service


def _connected(push: PushContext, c: ConnectedNode, notes: tuple[str, ...]) -> Node:
    info = c.info
    principal = c.principal or ""
    if info.secure and not principal:
        principal = spiffe_id(push, info.namespace, info.service_account)
    workload = push.workload(info.namespace, info.workload)
    inbound = next((n for n in c.listeners if n.startswith(INBOUND_LISTENER_PREFIX)), "")
    return Node(
        info,
        "connected",
        principal if info.secure else "",
        address=workload.spec.address if workload is not None else "",
        inbound_listener=inbound,
        notes=notes,
    )


def from_workload(push: PushContext, workload: Workload, note: str = "") -> Node:
    """A sidecar's facts from its registered Workload."""
    info = NodeInfo(
        id=f"sidecar~{workload.name}.{workload.namespace}",
        kind="sidecar",
        workload=workload.name,
        namespace=workload.namespace,
        service_account=workload.service_account,
        labels=dict(workload.metadata.labels),
        ports=tuple(p.port for p in workload.spec.ports),
        secure=workload.spec.mtls,
    )
    principal = spiffe_id(push, workload.namespace, workload.service_account)
    inbound = workload.spec.inbound
    listener = (
        inbound_listener_name(workload.spec.address, inbound.port) if inbound is not None else ""
    )
    notes = (f"{note}: its facts come from its Workload",) if note else ()
    return Node(
        info,
        "workload",
        principal if info.secure else "",
        address=workload.spec.address,
        inbound_listener=listener,
        notes=notes,
    )


def destination_node(
    push: PushContext, workload: str, address: str, port: int, connected: Sequence[ConnectedNode]
) -> Node | None:
    """The sidecar in front of the endpoint `address:port` of `workload` (`NAME.NAMESPACE`,
    from the endpoint's metadata); None when no node or sidecar Workload has that name."""
    name, _, namespace = workload.rpartition(".")
    for c in connected:
        if c.info.kind == "sidecar" and c.info.namespace == namespace and c.info.workload == name:
            node = _connected(push, c, ())
            if node.inbound_listener:
                return node
            listener = inbound_listener_name(address, port)
            return Node(node.info, node.origin, node.principal, address, listener, node.notes)
    found = push.workload(namespace, name)
    if found is None or found.spec.inbound is None:
        return None
    return from_workload(push, found, note=f"node sidecar~{name}.{namespace} is not connected")
