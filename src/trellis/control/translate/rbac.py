"""AuthorizationPolicies → the RBAC HTTP filters of one workload's inbound listener.

Istio's semantics (DESIGN §3, §5), for the policies that select the workload:
- Filters: a DENY filter, then an ALLOW filter, then (the listener adds it)
  the router. Sidecars name both `envoy.filters.http.rbac` (as Envoy and
  Istio do; our proxy knows filters by that name); grpcio NACKs duplicate
  names, so proxyless servers get `trellis.authz.deny` / `trellis.authz.allow`.
  A filter exists only when a policy of its action selects the workload;
  with no ALLOW policy there is no ALLOW filter and everything not denied is
  allowed. An ALLOW filter whose policies have no rules has an empty policy
  map: it denies everything (an ALLOW policy without rules allows nothing; a
  DENY policy without rules denies nothing).
- Dry run (sidecars only): dry-run policies go to `shadow_rules`, with
  `shadow_rules_stat_prefix` `trellis_dry_run_deny_` / `trellis_dry_run_allow_`,
  and `rules` is left unset when the filter has only dry-run policies (nothing
  enforced). DENY shadow rules hold the dry-run DENY policies (a shadow denial
  names the dry-run policy); ALLOW shadow rules hold the enforced and the
  dry-run ALLOW policies: what the ALLOW filter would be with them enforced.
  Proxyless servers (grpcio ignores shadow rules) get no dry-run policy at all.
- One Envoy Policy per AuthorizationPolicy, named `NAMESPACE/NAME`. Its rules
  are ORed, and inside a rule `from` (ORed sources), each `to` operation and
  each `when` condition are ANDed. Everything but ports is a Principal
  matcher; ports are Permissions (`destination_port`), and a Policy is
  "a permission AND a principal", so the rules of one AuthorizationPolicy
  share one Policy when they use the same set of ports (the usual case).
  Rules with different port sets need one Policy each, named
  `NAMESPACE/NAME#ports=P1,P2` (`#ports=*` for no ports): the name before
  `#` is always the AuthorizationPolicy's.
- Mapping (values in Istio's syntax, see rbac_values.py):
  source.principals / notPrincipals → authenticated.principal_name (not_id);
  source.namespaces / notNamespaces → principal_name on `spiffe://TD/ns/NS/`;
  operation.methods / notMethods → header `:method`; paths / notPaths →
  url_path; ports → destination_port (the workload port: the app port behind
  a sidecar, the serving port of a proxyless server); when
  `request.headers[X]` → header X, `source.namespace` / `source.principal` as
  the source fields; `values` are ORed, `notValues` negated.
- A header the client kind refuses (grpcio NACKs matchers on `grpc-*` and
  `:scheme`, gRFC A41) fails closed, as Istio does for what a filter chain
  cannot express: in a DENY rule the condition is dropped (the rule denies
  more), in an ALLOW rule the rule can no longer match (it allows less).
Pure; must not know PushContext, listeners or I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from trellis.control.translate import pb
from trellis.control.translate import rbac_values as values
from trellis.model.policies import AuthorizationPolicy, Condition, Operation, Source

Action = str  # "ALLOW" | "DENY", as in the model

_HEADER_KEY = "request.headers["
_ACTIONS: dict[Action, int] = {"DENY": rbac_pb2.RBAC.DENY, "ALLOW": rbac_pb2.RBAC.ALLOW}


@dataclass(frozen=True, slots=True)
class RbacDialect:
    """What one client kind's RBAC filters may contain."""

    deny_filter: str  # the HttpFilter names (grpcio NACKs duplicate names)
    allow_filter: str
    shadow: bool  # dry-run policies as shadow_rules; else they are left out
    refused_header_prefixes: tuple[str, ...] = ()
    refused_headers: frozenset[str] = frozenset()

    def refuses(self, header: str) -> bool:
        return header in self.refused_headers or header.startswith(self.refused_header_prefixes)


# Our sidecar decodes RBAC filters by their well-known name (as Envoy and Istio name both).
SIDECAR = RbacDialect(deny_filter=pb.RBAC_FILTER, allow_filter=pb.RBAC_FILTER, shadow=True)
# grpcio: unique filter names, no shadow rules, no `grpc-*` or `:scheme` header matchers.
PROXYLESS = RbacDialect(
    deny_filter="trellis.authz.deny",
    allow_filter="trellis.authz.allow",
    shadow=False,
    refused_header_prefixes=("grpc-",),
    refused_headers=frozenset({":scheme"}),
)


def rbac_filters(
    policies: Sequence[AuthorizationPolicy], trust_domain: str, dialect: RbacDialect
) -> list[hcm_pb2.HttpFilter]:
    """[DENY filter?, ALLOW filter?] for the policies that select one workload."""
    out = []
    for action, name in (("DENY", dialect.deny_filter), ("ALLOW", dialect.allow_filter)):
        selected = [p for p in policies if p.spec.action == action]
        config = filter_config(action, selected, trust_domain, dialect)
        if config is not None:
            out.append(hcm_pb2.HttpFilter(name=name, typed_config=pb.pack(config)))
    return out


def filter_config(
    action: Action,
    policies: Sequence[AuthorizationPolicy],
    trust_domain: str,
    dialect: RbacDialect,
) -> http_rbac_pb2.RBAC | None:
    """One filter's config for `policies` (all of `action`); None when it needs no filter."""
    enforced = [p for p in policies if not p.spec.dry_run]
    dry_run = [p for p in policies if p.spec.dry_run] if dialect.shadow else []
    if not enforced and not dry_run:
        return None
    config = http_rbac_pb2.RBAC()
    if enforced:
        config.rules.SetInParent()  # present even when empty: an empty ALLOW denies everything
        config.rules.MergeFrom(rules(action, enforced, trust_domain, dialect))
    if dry_run:
        shadow = dry_run if action == "DENY" else [*enforced, *dry_run]
        config.shadow_rules.SetInParent()
        config.shadow_rules.MergeFrom(rules(action, shadow, trust_domain, dialect))
        config.shadow_rules_stat_prefix = f"trellis_dry_run_{action.lower()}_"
    return config


def rules(
    action: Action,
    policies: Sequence[AuthorizationPolicy],
    trust_domain: str,
    dialect: RbacDialect,
) -> rbac_pb2.RBAC:
    out = rbac_pb2.RBAC(action=_ACTIONS[action])
    for policy in policies:
        for name, built in envoy_policies(policy, trust_domain, dialect).items():
            out.policies[name].CopyFrom(built)
    return out


def policy_name(policy: AuthorizationPolicy) -> str:
    return f"{policy.namespace}/{policy.name}"


def envoy_policies(
    policy: AuthorizationPolicy, trust_domain: str, dialect: RbacDialect
) -> dict[str, rbac_pb2.Policy]:
    """The Envoy Policies of one AuthorizationPolicy: one per distinct port set (usually one)."""
    build = _RuleBuilder(policy.spec.action, trust_domain, dialect)
    out = {}
    for name, (ports, clauses) in _clauses(policy).items():
        principals = []
        for clause in clauses:
            rule = policy.spec.rules[clause.rule]
            parts = []
            if rule.from_:
                parts.append(values.any_of([build.source(f.source) for f in rule.from_]))
            parts.extend(build.condition(c) for c in rule.when)
            if clause.operation is not None:
                parts.extend(build.operation(clause.operation))
            principals.append(values.all_of(parts))
        permissions = [rbac_pb2.Permission(destination_port=p) for p in ports] or [
            rbac_pb2.Permission(any=True)
        ]
        out[name] = rbac_pb2.Policy(permissions=permissions, principals=principals)
    return out


@dataclass(frozen=True, slots=True)
class Clause:
    """One principal of an Envoy Policy: rule `rule` of the AuthorizationPolicy with its
    `to` entry `to` (None: a rule without `to`), whose operation it carries."""

    rule: int
    to: int | None
    operation: Operation | None


def rule_origins(policy: AuthorizationPolicy) -> dict[str, tuple[Clause, ...]]:
    """Per Envoy Policy name of `policy`: where each of its principals comes from, in order
    (principal i is clause i), so an explanation can name the rule that matched."""
    return {name: clauses for name, (_, clauses) in _clauses(policy).items()}


def _clauses(
    policy: AuthorizationPolicy,
) -> dict[str, tuple[tuple[int, ...], tuple[Clause, ...]]]:
    """Envoy Policy name -> (its ports, its clauses): every (rule, operation) pair grouped
    by the operation's port set, in rule order."""
    by_ports: dict[tuple[int, ...], list[Clause]] = {}
    for r, rule in enumerate(policy.spec.rules):
        operations: list[tuple[int | None, Operation | None]] = [
            (i, t.operation) for i, t in enumerate(rule.to)
        ] or [(None, None)]
        for to, operation in operations:
            ports = tuple(sorted(set(operation.ports))) if operation is not None else ()
            by_ports.setdefault(ports, []).append(Clause(r, to, operation))
    base = policy_name(policy)
    return {
        (base if len(by_ports) == 1 else f"{base}#ports={_ports_label(ports)}"): (
            ports,
            tuple(clauses),
        )
        for ports, clauses in by_ports.items()
    }


def _ports_label(ports: tuple[int, ...]) -> str:
    return ",".join(str(p) for p in ports) or "*"


class _RuleBuilder:
    """The Principal matchers of one policy's rules (its action decides how refusals fail)."""

    __slots__ = ("action", "dialect", "trust_domain")

    def __init__(self, action: Action, trust_domain: str, dialect: RbacDialect) -> None:
        self.action = action
        self.trust_domain = trust_domain
        self.dialect = dialect

    def source(self, source: Source) -> rbac_pb2.Principal:
        """All of a source's fields (none: any peer)."""
        parts = self._either(
            [values.principal(v) for v in source.principals],
            [values.principal(v) for v in source.not_principals],
        )
        parts += self._either(
            [values.namespace(v, self.trust_domain) for v in source.namespaces],
            [values.namespace(v, self.trust_domain) for v in source.not_namespaces],
        )
        return values.all_of(parts)

    def operation(self, op: Operation) -> list[rbac_pb2.Principal]:
        """Methods and paths (ports are the Policy's permissions)."""
        parts = self._either(
            [values.header(":method", v) for v in op.methods],
            [values.header(":method", v) for v in op.not_methods],
        )
        parts += self._either(
            [values.path(v) for v in op.paths], [values.path(v) for v in op.not_paths]
        )
        return parts

    def condition(self, condition: Condition) -> rbac_pb2.Principal:
        key = condition.key
        if key.startswith(_HEADER_KEY):
            name = key[len(_HEADER_KEY) : -1].lower()
            if self.dialect.refuses(name):
                # Fail closed: a DENY rule denies more, an ALLOW rule allows less.
                return values.always() if self.action == "DENY" else values.never()
            yes = [values.header(name, v) for v in condition.values]
            no = [values.header(name, v) for v in condition.not_values]
        elif key == "source.namespace":
            yes = [values.namespace(v, self.trust_domain) for v in condition.values]
            no = [values.namespace(v, self.trust_domain) for v in condition.not_values]
        else:  # source.principal (the model allows no other key)
            yes = [values.principal(v) for v in condition.values]
            no = [values.principal(v) for v in condition.not_values]
        return values.all_of(self._either(yes, no))

    @staticmethod
    def _either(
        yes: list[rbac_pb2.Principal], no: list[rbac_pb2.Principal]
    ) -> list[rbac_pb2.Principal]:
        """[any of `yes`] (when given) and [none of `no`] (when given)."""
        parts = []
        if yes:
            parts.append(values.any_of(yes))
        if no:
            parts.append(values.negate(values.any_of(no)))
        return parts
