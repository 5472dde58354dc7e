"""Pure authorization: Envoy RBAC HTTP filter configs compiled once, evaluated per request.

The sidecar's inbound listener carries RBAC filters (DENY, then ALLOW, then
the router) that the control plane translates from AuthorizationPolicies.
`Engine.compile(rbac)` turns one `envoy.extensions.filters.http.rbac.v3.RBAC`
into plain predicates once per config version and raises
`RbacConfigError(path, reason)` for anything it cannot apply (the xDS client
NACKs with it). `engine.evaluate(RequestView(...))` returns a `Decision`
(allowed, the deciding policy's name, the shadow policy that would have
denied); `authorize(engines, request)` runs a chain of filters, and
`explain(engines, request)` says why it decides as it does. No I/O, no
asyncio, no clock; string matchers and regexes are trellis.routing's.
"""

from trellis.authz.engine import (
    ALLOWED,
    NO_POLICY,
    AuthzTrail,
    Decision,
    Engine,
    FilterCheck,
    PolicyCheck,
    RulesCheck,
    RuleSet,
    authorize,
    explain,
)
from trellis.authz.errors import RbacConfigError
from trellis.authz.request import RequestView

__all__ = [
    "ALLOWED",
    "NO_POLICY",
    "AuthzTrail",
    "Decision",
    "Engine",
    "FilterCheck",
    "PolicyCheck",
    "RbacConfigError",
    "RequestView",
    "RuleSet",
    "RulesCheck",
    "authorize",
    "explain",
]
