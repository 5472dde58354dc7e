"""Istio's value syntax in AuthorizationPolicies → Envoy RBAC Principal matchers.

Owns how one value of a policy field becomes one matcher (Istio's rules):
- `*` alone: presence (any authenticated peer for principals, any path,
  a header that is present); `*x`: suffix `x`; `x*`: prefix `x`; else exact.
- Principals are SPIFFE IDs: `TD/ns/N/sa/S` (Istio's spelling) or
  `spiffe://TD/ns/N/sa/S`; exact and prefix forms get `spiffe://` when it is
  missing, suffixes are matched as written.
- Namespaces match the peer's SPIFFE ID in this mesh's trust domain:
  `N` → prefix `spiffe://TD/ns/N/`, `N*` → prefix `spiffe://TD/ns/N`,
  `*N` → regex `spiffe://TD/ns/[^/]*N/.+` (RE2), `*` → prefix `spiffe://TD/ns/`.
Everything is a Principal (Principals can match headers and paths too), so
the builder can AND and OR them freely. Must not know about rules, actions
or client kinds.
"""

from __future__ import annotations

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2

from trellis.wire import SPIFFE_SCHEME as SPIFFE

_RE2_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def always() -> rbac_pb2.Principal:
    return rbac_pb2.Principal(any=True)


def never() -> rbac_pb2.Principal:
    return rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))


def any_of(ids: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    """OR of `ids`: nested ORs flattened, `any` absorbs, `never` drops out (none: never)."""
    flat = [p for p in _flatten(ids, "or_ids") if not _is_never(p)]
    if not flat:
        return never()
    if any(p.WhichOneof("identifier") == "any" for p in flat):
        return always()
    return (
        flat[0] if len(flat) == 1 else rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=flat))
    )


def all_of(ids: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    """AND of `ids`: nested ANDs flattened, `never` absorbs, `any` drops out (none: always)."""
    flat = [p for p in _flatten(ids, "and_ids") if p.WhichOneof("identifier") != "any"]
    if not flat:
        return always()
    if any(_is_never(p) for p in flat):
        return never()
    return (
        flat[0] if len(flat) == 1 else rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=flat))
    )


def _is_never(p: rbac_pb2.Principal) -> bool:
    return bool(
        p.WhichOneof("identifier") == "not_id" and p.not_id.WhichOneof("identifier") == "any"
    )


def _flatten(ids: list[rbac_pb2.Principal], kind: str) -> list[rbac_pb2.Principal]:
    out = []
    for p in ids:
        if p.WhichOneof("identifier") == kind:
            out.extend(getattr(p, kind).ids)
        else:
            out.append(p)
    return out


def negate(principal: rbac_pb2.Principal) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(not_id=principal)


def re2_escape(text: str) -> str:
    """`text` as a literal in a regex that both RE2 and Python's `re` read the same way."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in text)


def wildcard(value: str, add: str = "") -> string_pb2.StringMatcher:
    """`*x` → suffix x; `x*` → prefix add+x; else exact add+x (the caller handles `*` alone)."""
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:])
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=add + value[:-1])
    return string_pb2.StringMatcher(exact=add + value)


def _authenticated(name: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=name))


def principal(value: str) -> rbac_pb2.Principal:
    """A `principals` / `source.principal` value."""
    if value == "*":
        return _authenticated(
            string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
        )
    return _authenticated(wildcard(value, "" if value.startswith(SPIFFE) else SPIFFE))


def namespace(value: str, trust_domain: str) -> rbac_pb2.Principal:
    """A `namespaces` / `source.namespace` value, in the mesh's trust domain."""
    base = f"{SPIFFE}{trust_domain}/ns/"
    if value == "*":
        return _authenticated(string_pb2.StringMatcher(prefix=base))
    if value.startswith("*"):
        regex = f"{re2_escape(base)}[^/]*{re2_escape(value[1:])}/.+"
        return _authenticated(
            string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
        )
    if value.endswith("*"):
        return _authenticated(string_pb2.StringMatcher(prefix=base + value[:-1]))
    return _authenticated(string_pb2.StringMatcher(prefix=f"{base}{value}/"))


def path(value: str) -> rbac_pb2.Principal:
    """A `paths` value, matched against the path without its query (`url_path`). `*` is
    any path, still a condition on the path: a tunnel has none, so an ALLOW rule naming
    paths never matches one, `*` included (Istio drops HTTP-only fields for TCP)."""
    if value == "*":
        return any_of([_url_path(string_pb2.StringMatcher(prefix="/")), _url_path(_ASTERISK)])
    return _url_path(wildcard(value))


_ASTERISK = string_pb2.StringMatcher(exact="*")  # `OPTIONS *` (RFC 9112 §3.2.4)


def _url_path(matcher: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(url_path=path_pb2.PathMatcher(path=matcher))


def header(name: str, value: str) -> rbac_pb2.Principal:
    """A header value (`request.headers[name]`, or `:method` for `methods`)."""
    if value == "*":
        return rbac_pb2.Principal(header=rc.HeaderMatcher(name=name, present_match=True))
    return rbac_pb2.Principal(header=rc.HeaderMatcher(name=name, string_match=wildcard(value)))
