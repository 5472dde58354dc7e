"""What a matched route does: forward (one or weighted clusters), redirect, answer directly.

Owns:
- `ForwardAction.pick(r)`: Envoy's weighted pick, each cluster owning an
  interval proportional to its weight; a weight-0 cluster is never picked;
  total weight 0 (or no clusters) is a config error;
- `RedirectAction.location(scheme, authority, path)`: Envoy's `Location` rules —
  `scheme_redirect`/`https_redirect` else the request's scheme; `host_redirect`
  else the request authority, whose port is dropped when `port_redirect` is set
  or when the scheme changes and the port was the old scheme's default (`:80`
  for http, `:443` for https); `path_redirect` (keeping the request's query
  unless it has its own), or `prefix_rewrite` / `regex_rewrite` of the path;
  `strip_query`; the status from `response_code` (301 by default);
- `DirectResponseAction(status, body)`; `NonForwardingAction` (gRFC A36
  servers: the request is for the local application, no upstream).
Must not know about matching, timeouts or retries (the route holds those).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields
from trellis.routing.regex import compile_rewrite
from trellis.routing.rewrite import PathRewrite
from trellis.wire import inbound_cluster_port

_MAX_TOTAL_WEIGHT = 2**32 - 1
# envoy.config.route.v3.RedirectAction.RedirectResponseCode
_REDIRECT_STATUS = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_FORWARD_FIELDS = ("cluster", "weighted_clusters")


class ForwardAction:
    """Forward upstream to one cluster chosen by weight."""

    __slots__ = ("_cumulative", "_fallback", "_names", "_total", "cluster_names", "clusters")

    def __init__(self, clusters: Sequence[tuple[str, int]]) -> None:
        self.clusters: tuple[tuple[str, int], ...] = tuple(clusters)
        self.cluster_names = frozenset(name for name, _ in self.clusters)
        self._names = tuple(name for name, _ in self.clusters)
        cumulative: list[int] = []
        total = 0
        for _, weight in self.clusters:
            total += weight
            cumulative.append(total)
        if total <= 0:
            raise ValueError("the total weight of a forward action must be positive")
        self._cumulative = tuple(cumulative)
        self._total = total
        # Where float rounding could land past the end: the last cluster with weight.
        self._fallback = max(i for i, (_, w) in enumerate(self.clusters) if w > 0)

    def app_port(self) -> int:
        """The app port of an inbound route: its first `inbound|PORT||` cluster (0: none)."""
        for name, _ in self.clusters:
            port = inbound_cluster_port(name)
            if port:
                return port
        return 0

    def pick(self, r: float) -> str:
        """The cluster for `r` uniform in [0, 1): each gets a share proportional to its weight."""
        names = self._names
        if len(names) == 1:
            return names[0]
        if not 0.0 <= r < 1.0:
            r = 0.0 if r < 0.0 or r != r else 1.0  # clamp (NaN → 0); 1.0 → the fallback
        i = bisect_right(self._cumulative, r * self._total)
        return names[i] if i < len(names) else names[self._fallback]

    def __repr__(self) -> str:
        return f"ForwardAction({list(self.clusters)})"


class RedirectAction:
    """Answer with a redirect; `location()` computes the `Location` header."""

    __slots__ = (
        "_path_has_query",
        "host",
        "path",
        "port",
        "rewrite",
        "scheme",
        "status",
        "strip_query",
    )

    def __init__(
        self,
        *,
        status: int = 301,
        scheme: str | None = None,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        rewrite: PathRewrite | None = None,
        strip_query: bool = False,
    ) -> None:
        self.status = status
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.rewrite = rewrite
        self.strip_query = strip_query
        self._path_has_query = path is not None and "?" in path

    def location(self, scheme: str, authority: str, path: str) -> str:
        """The `Location` for a request to `scheme://authority` + `path` (query included)."""
        new_scheme = self.scheme or scheme
        new_port = f":{self.port}" if self.port else ""
        host = self.host or _request_host(authority, scheme, new_scheme, new_port)
        if self.path is not None:
            if self._path_has_query:
                new_path = self.path
            else:
                q = path.find("?")
                new_path = self.path + (path[q:] if q >= 0 else "")
        elif self.rewrite is not None:
            new_path = self.rewrite.apply(path)
        else:
            new_path = path
        if not new_path.startswith("/"):
            new_path = "/" + new_path
        if self.strip_query and not self._path_has_query:
            q = new_path.find("?")
            if q >= 0:
                new_path = new_path[:q]
        return f"{new_scheme}://{host}{new_port}{new_path}"

    def __repr__(self) -> str:
        return f"RedirectAction(status={self.status}, scheme={self.scheme!r}, host={self.host!r})"


def _request_host(authority: str, old_scheme: str, new_scheme: str, new_port: str) -> str:
    """Envoy's processRequestHost: the request authority, maybe without its port."""
    if authority.startswith("["):
        end = authority.rfind("]:")
        end = end + 1 if end >= 0 else -1
    else:
        end = authority.rfind(":")
    if end < 0:
        return authority
    port = authority[end:]
    drop = bool(new_port) or (new_scheme != old_scheme and _DEFAULT_PORTS.get(old_scheme) == port)
    return authority[:end] if drop else authority


class DirectResponseAction:
    """Answer `status` with `body` without going upstream."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes = b"") -> None:
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"DirectResponseAction({self.status}, {len(self.body)} bytes)"


class NonForwardingAction:
    """A server-side route (gRFC A36): the request goes to the local application."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NonForwardingAction()"


Action = ForwardAction | RedirectAction | DirectResponseAction | NonForwardingAction


# -- compile ------------------------------------------------------------------------------


def compile_forward(action: Any, path: str) -> ForwardAction:
    """The cluster specifier of a RouteAction (`cluster` or `weighted_clusters`)."""
    kind = action.WhichOneof("cluster_specifier")
    if kind == "cluster":
        if not action.cluster:
            raise RouteConfigError(field(path, "cluster"), "empty cluster name")
        return ForwardAction(((action.cluster, 1),))
    if kind != "weighted_clusters":
        raise RouteConfigError(
            field(path, kind or "cluster_specifier"),
            "a route action needs cluster or weighted_clusters",
        )
    where = field(path, "weighted_clusters")
    weighted = action.weighted_clusters
    check_fields(
        weighted, where, applied=("clusters",), ignored=("total_weight", "runtime_key_prefix")
    )
    clusters: list[tuple[str, int]] = []
    for i, c in enumerate(weighted.clusters):
        at = f"{where}.clusters[{i}]"
        check_fields(c, at, applied=("name", "weight"))
        if not c.name:
            raise RouteConfigError(field(at, "name"), "empty cluster name")
        clusters.append((c.name, c.weight.value))
    total = sum(w for _, w in clusters)
    if not clusters:
        raise RouteConfigError(field(where, "clusters"), "no clusters")
    if total == 0:
        raise RouteConfigError(field(where, "clusters"), "the total weight is 0")
    if total > _MAX_TOTAL_WEIGHT:
        raise RouteConfigError(field(where, "clusters"), f"the total weight {total} exceeds 2^32-1")
    return ForwardAction(clusters)


_REDIRECT_FIELDS = (
    "https_redirect",
    "scheme_redirect",
    "host_redirect",
    "port_redirect",
    "path_redirect",
    "prefix_rewrite",
    "regex_rewrite",
    "response_code",
    "strip_query",
)


def compile_redirect(redirect: Any, path: str, prefix_length: int | None) -> RedirectAction:
    check_fields(redirect, path, applied=_REDIRECT_FIELDS)
    status = _REDIRECT_STATUS.get(redirect.response_code)
    if status is None:
        raise RouteConfigError(
            field(path, "response_code"), f"unknown response code {redirect.response_code}"
        )
    scheme_kind = redirect.WhichOneof("scheme_rewrite_specifier")
    scheme = None
    if scheme_kind == "https_redirect":
        scheme = "https" if redirect.https_redirect else None
    elif scheme_kind == "scheme_redirect":
        scheme = redirect.scheme_redirect.lower() or None
    path_kind = redirect.WhichOneof("path_rewrite_specifier")
    rewrite = None
    if path_kind == "prefix_rewrite":
        rewrite = PathRewrite(prefix=redirect.prefix_rewrite, prefix_length=prefix_length)
    elif path_kind == "regex_rewrite":
        rewrite = PathRewrite(regex=compile_rewrite(redirect.regex_rewrite, field(path, path_kind)))
    if redirect.port_redirect > 65535:
        raise RouteConfigError(field(path, "port_redirect"), f"{redirect.port_redirect} is no port")
    return RedirectAction(
        status=status,
        scheme=scheme,
        host=redirect.host_redirect or None,
        port=redirect.port_redirect or None,
        path=redirect.path_redirect if path_kind == "path_redirect" else None,
        rewrite=rewrite,
        strip_query=redirect.strip_query,
    )


def compile_direct(direct: Any, path: str, max_body: int) -> DirectResponseAction:
    check_fields(direct, path, applied=("status", "body"))
    if not 200 <= direct.status < 600:
        raise RouteConfigError(field(path, "status"), f"{direct.status} is not in [200, 600)")
    body = b""
    if direct.HasField("body"):
        where = field(path, "body")
        check_fields(direct.body, where, applied=("inline_string", "inline_bytes"))
        kind = direct.body.WhichOneof("specifier")
        if kind == "inline_string":
            body = direct.body.inline_string.encode()
        elif kind == "inline_bytes":
            body = bytes(direct.body.inline_bytes)
        if len(body) > max_body:
            raise RouteConfigError(where, f"{len(body)} bytes, more than the {max_body} allowed")
    return DirectResponseAction(direct.status, body)
