"""How xDS resources are named, and how a requested name finds its service (DESIGN §2).

- Service FQDN: `NAME.NAMESPACE.svc.mesh`. Short names (`reviews`,
  `reviews:9080`) resolve in the *client's* namespace.
- Outbound Listener: every spelling a client may use is its own Listener.
- RouteConfiguration: one per (service, port), named `FQDN:PORT`.
- Cluster and ClusterLoadAssignment: `outbound|PORT||FQDN`; a sidecar's local
  app port is the cluster `inbound|PORT||`.
- Inbound Listener (gRFC A36): `trellis/inbound?address=IP:PORT`.

Pure string work plus lookups in the PushContext; no protobuf here.
"""

from __future__ import annotations

from dataclasses import dataclass

from trellis import wire
from trellis.control.push.context import PushContext
from trellis.model.service import Service, ServicePort

# The wire contract's names (shared with the proxy), used here and by the generators.
# Sidecars only: `trellis/outbound` is what to do with hosts outside the registry
# (Istio's virtual outbound), routed to PassthroughCluster or BlackHoleCluster.
from trellis.wire import BLACKHOLE_CLUSTER as BLACKHOLE_CLUSTER
from trellis.wire import DOMAIN_SUFFIX as DOMAIN_SUFFIX
from trellis.wire import INBOUND_LISTENER_PREFIX as INBOUND_LISTENER_PREFIX
from trellis.wire import NO_SUCH_PORT, SEVERAL_PORTS
from trellis.wire import OUTBOUND_DEFAULT_LISTENER as OUTBOUND_DEFAULT_LISTENER
from trellis.wire import PASSTHROUGH_CLUSTER as PASSTHROUGH_CLUSTER
from trellis.wire import inbound_cluster_name as inbound_cluster_name
from trellis.wire import inbound_listener_name as inbound_listener_name


def fqdn(namespace: str, name: str) -> str:
    return wire.service_fqdn(namespace, name)


def service_fqdn(service: Service) -> str:
    return fqdn(service.namespace, service.name)


def route_config_name(service: Service, port: int) -> str:
    return f"{service_fqdn(service)}:{port}"


def outbound_cluster_name(namespace: str, name: str, port: int) -> str:
    return wire.outbound_cluster_name(fqdn(namespace, name), port)


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved (service, port)."""

    service: Service
    port: ServicePort


class Unresolved(Exception):
    """A name that exists nowhere (or is ambiguous): the reason goes to NOT_FOUND."""


def _split_port(name: str) -> tuple[str, int | None]:
    host, sep, port_text = name.rpartition(":")
    if not sep:
        return name, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise Unresolved(f"{name!r}: {port_text!r} is not a port number")
    return host, int(port_text)


def _split_host(host: str, client_namespace: str) -> tuple[str, str]:
    """(namespace, name) of `name`, `name.namespace` or `name.namespace.svc.mesh`."""
    parts = host.split(".")
    if len(parts) == 1:
        return client_namespace, parts[0]
    if len(parts) == 2 or (len(parts) == 4 and ".".join(parts[2:]) == DOMAIN_SUFFIX):
        return parts[1], parts[0]
    forms = f"NAME, NAME.NAMESPACE or NAME.NAMESPACE.{DOMAIN_SUFFIX}"
    raise Unresolved(f"{host!r} is not a mesh service name ({forms})")


def pick_port(service: Service, port: int | None) -> ServicePort:
    """The service port a name means: the given one, else 80 when declared, else the only one."""
    where = f"service {service.namespace}/{service.name}"
    known = ", ".join(str(p.port) for p in service.spec.ports)
    if port is not None:
        found = service.port(port)
        if found is None:
            raise Unresolved(f"{where} {NO_SUCH_PORT} {port} (ports: {known})")
        return found
    default = service.default_port()
    if default is None:
        raise Unresolved(f"{where} {SEVERAL_PORTS} ({known}) and no port 80: name one")
    return default


def resolve_host(push: PushContext, name: str, client_namespace: str) -> Target:
    """The (service, port) a Listener name means for a client in `client_namespace`."""
    host, port = _split_port(name)
    namespace, svc_name = _split_host(host, client_namespace)
    service = push.service(namespace, svc_name)
    if service is None:
        raise Unresolved(f"no service {svc_name!r} in namespace {namespace!r}")
    return Target(service, pick_port(service, port))


def resolve_route_config(push: PushContext, name: str) -> Target:
    """The (service, port) of a RouteConfiguration name `FQDN:PORT`."""
    host, port = _split_port(name)
    if port is None or not host.endswith("." + DOMAIN_SUFFIX):
        raise Unresolved(f"{name!r} is not a route configuration name (FQDN:PORT)")
    namespace, svc_name = _split_host(host, "")
    service = push.service(namespace, svc_name)
    if service is None:
        raise Unresolved(f"no service {svc_name!r} in namespace {namespace!r}")
    return Target(service, pick_port(service, port))


@dataclass(frozen=True, slots=True)
class ClusterRef:
    """A parsed cluster name: outbound (namespace, name, port) or inbound (port only)."""

    direction: str  # "outbound" | "inbound"
    port: int
    namespace: str = ""
    name: str = ""


def parse_cluster_name(name: str) -> ClusterRef:
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound") or parts[2]:
        raise Unresolved(f"{name!r} is not a cluster name (outbound|PORT||FQDN or inbound|PORT||)")
    direction, port_text, _, host = parts
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise Unresolved(f"{name!r}: {port_text!r} is not a port number")
    if direction == "inbound":
        if host:
            raise Unresolved(f"{name!r}: an inbound cluster name ends with '||'")
        return ClusterRef("inbound", int(port_text))
    if not host.endswith("." + DOMAIN_SUFFIX):
        raise Unresolved(f"{name!r}: {host!r} is not a service FQDN")
    namespace, svc_name = _split_host(host, "")
    return ClusterRef("outbound", int(port_text), namespace, svc_name)


def resolve_cluster(push: PushContext, ref: ClusterRef) -> Target:
    service = push.service(ref.namespace, ref.name)
    if service is None:
        raise Unresolved(f"no service {ref.name!r} in namespace {ref.namespace!r}")
    return Target(service, pick_port(service, ref.port))


def parse_inbound_listener(name: str) -> tuple[str, int] | None:
    """(address, port) of `trellis/inbound?address=IP:PORT`, None if `name` is not one."""
    if not name.startswith(INBOUND_LISTENER_PREFIX):
        return None
    host, port = _split_port(name[len(INBOUND_LISTENER_PREFIX) :])
    if port is None or not host:
        raise Unresolved(f"{name!r}: the inbound address needs IP:PORT")
    return host.removeprefix("[").removesuffix("]"), port


def spellings(service: Service, port: int, client_namespace: str) -> list[str]:
    """Every name a client in `client_namespace` may use for `service`:`port`.

    Short names only in the service's own namespace; names without a port only
    for the service's default port. Sorted for stable output.
    """
    hosts = [f"{service.name}.{service.namespace}", service_fqdn(service)]
    if service.namespace == client_namespace:
        hosts.insert(0, service.name)
    default = service.default_port()
    with_default = default is not None and default.port == port
    out = [f"{h}:{port}" for h in hosts]
    if with_default:
        out += hosts
    return sorted(out)
