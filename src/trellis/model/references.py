"""Checks between documents: what a route or policy names must exist.

Pure: it takes the world as it would be after an apply (`world`) and the keys
being written (`written`), and returns errors for the written documents only.
Deleting a Service that routes still name is allowed (as in Kubernetes); the
translator answers such backends as unknown clusters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from trellis.model.base import Document
from trellis.model.errors import DocumentError, FieldError
from trellis.model.keys import ResourceKey
from trellis.model.policies import DestinationPolicy, RateLimitPolicy
from trellis.model.routes import (
    GRPCRoute,
    GRPCRouteFilter,
    GRPCRouteRule,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteRule,
)
from trellis.model.service import Service


def key_of(doc: Document) -> ResourceKey:
    return ResourceKey(doc.kind, doc.namespace, doc.name)


def _check_service_ref(
    world: Mapping[ResourceKey, Document], ns: str, name: str, port: int | None, path: str
) -> FieldError | None:
    svc = world.get(ResourceKey("Service", ns, name))
    if not isinstance(svc, Service):
        return FieldError(path, f"unknown service {ns}/{name}")
    if port is not None and svc.port(port) is None:
        known = ", ".join(str(p.port) for p in svc.spec.ports)
        return FieldError(
            f"{path}.port", f"service {ns}/{name} has no port {port} (ports: {known})"
        )
    return None


def _route_errors(
    route: HTTPRoute | GRPCRoute, world: Mapping[ResourceKey, Document]
) -> list[FieldError]:
    errors: list[FieldError] = []
    ns = route.namespace
    for i, parent in enumerate(route.spec.parent_refs):
        e = _check_service_ref(
            world, parent.namespace or ns, parent.name, parent.port, f"spec.parentRefs[{i}]"
        )
        if e:
            errors.append(e)
    rules: Sequence[HTTPRouteRule | GRPCRouteRule] = route.spec.rules
    for r, rule in enumerate(rules):
        for b, backend in enumerate(rule.backend_refs):
            path = f"spec.rules[{r}].backendRefs[{b}]"
            e = _check_service_ref(world, backend.namespace or ns, backend.name, backend.port, path)
            if e:
                errors.append(e)
        if rule.backend_refs and sum(b.weight for b in rule.backend_refs) == 0:
            errors.append(FieldError(f"spec.rules[{r}].backendRefs", "weights must not all be 0"))
        filters: Sequence[HTTPRouteFilter | GRPCRouteFilter] = rule.filters
        for f, filt in enumerate(filters):
            if filt.request_mirror is not None:
                m = filt.request_mirror.backend_ref
                path = f"spec.rules[{r}].filters[{f}].requestMirror.backendRef"
                e = _check_service_ref(world, m.namespace or ns, m.name, m.port, path)
                if e:
                    errors.append(e)
    return errors


def _rate_limit_errors(
    policy: RateLimitPolicy, world: Mapping[ResourceKey, Document]
) -> list[FieldError]:
    """Its service exists; each route it names is an HTTPRoute attached to that service,
    and a rule it names by index exists."""
    ns, service = policy.namespace, policy.spec.service
    e = _check_service_ref(world, ns, service, None, "spec.service")
    errors = [e] if e else []
    for i, ref in enumerate(policy.spec.routes):
        path = f"spec.routes[{i}]"
        route_ns = ref.namespace or ns
        route = world.get(ResourceKey("HTTPRoute", route_ns, ref.name))
        if not isinstance(route, HTTPRoute):
            errors.append(FieldError(f"{path}.name", f"unknown HTTPRoute {route_ns}/{ref.name}"))
            continue
        if not any(
            p.name == service and (p.namespace or route.namespace) == ns
            for p in route.spec.parent_refs
        ):
            errors.append(
                FieldError(
                    f"{path}.name",
                    f"HTTPRoute {route_ns}/{ref.name} is not attached to service {ns}/{service}",
                )
            )
        if ref.rule is not None and ref.rule >= len(route.spec.rules):
            errors.append(
                FieldError(
                    f"{path}.rule",
                    f"HTTPRoute {route_ns}/{ref.name} has {len(route.spec.rules)} rule(s)",
                )
            )
    return errors


def check_references(
    world: Mapping[ResourceKey, Document], written: Iterable[ResourceKey]
) -> list[DocumentError]:
    """Errors of the written documents against the whole world they would live in."""
    problems = []
    for key in written:
        doc = world.get(key)
        errors: list[FieldError] = []
        if isinstance(doc, HTTPRoute | GRPCRoute):
            errors = _route_errors(doc, world)
        elif isinstance(doc, DestinationPolicy):
            e = _check_service_ref(world, doc.namespace, doc.spec.service, None, "spec.service")
            errors = [e] if e else []
        elif isinstance(doc, RateLimitPolicy):
            errors = _rate_limit_errors(doc, world)
        if errors:
            problems.append(DocumentError(str(key), tuple(errors)))
    return problems
