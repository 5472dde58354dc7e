"""What `trellis explain` is asked: a source, a method, a URL and headers, checked.

Owns reading the request as the source's app would send it to its sidecar: an
absolute-form `http://HOST[:PORT]/PATH?QUERY` (what HTTP_PROXY clients send), whose
`host[:port]`, lower-cased, names the outbound listener, and whose path and query go
as written (the sidecar normalizes them, not this module). Headers are `name: value`
lines; repeated names are joined with "," (as the proxy's header map does). Bad input
raises `ExplainError` with what is wrong. Pure: no I/O, knows nothing of xDS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# RFC 9110 §5.6.2 token (methods, field names).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_PORT = re.compile(r"^[0-9]{1,5}$")
MAX_HEADERS = 100


class ExplainError(ValueError):
    """The question cannot be explained as asked (bad URL, header, method or source)."""


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    """One request to explain. `source`: the calling service (`NAME`, `NAME.NAMESPACE`) or a
    node id (`sidecar~WORKLOAD.NAMESPACE`); `pick`: a backend to follow (a cluster name or
    its service's name) when the route splits, else every backend is followed."""

    source: str
    method: str
    authority: str  # host[:port], lower-cased: the outbound listener's name
    target: str  # the path with its query, as written
    headers: tuple[tuple[str, str], ...] = ()  # names lower-cased, in order
    namespace: str = "default"  # the source's namespace when `source` names none
    pick: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.authority}{self.target}"

    def header_map(self) -> dict[str, str]:
        """By lower-case name, repeated ones joined with "," (what routes and policies see)."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            out[name] = f"{out[name]},{value}" if name in out else value
        return out


def parse_request(
    source: str,
    method: str,
    url: str,
    headers: Iterable[str] | Mapping[str, str] = (),
    *,
    namespace: str = "default",
    pick: str | None = None,
) -> ExplainRequest:
    """Check and read the question; raises ExplainError saying what is wrong."""
    if not source.strip():
        raise ExplainError("from: name the calling service (NAME or NAME.NAMESPACE) or a node id")
    if not _TOKEN.match(method):
        raise ExplainError(f"method: {method!r} is not an HTTP method")
    if method == "CONNECT":
        raise ExplainError("method: CONNECT tunnels are not explained, only HTTP requests")
    authority, target = split_url(url)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else [_field(h) for h in headers]
    if len(pairs) > MAX_HEADERS:
        raise ExplainError(f"headers: at most {MAX_HEADERS}")
    checked = []
    for name, value in pairs:
        if not _TOKEN.match(name):
            raise ExplainError(f"headers: {name!r} is not a header name")
        if not _FIELD_VALUE.match(value):
            raise ExplainError(f"headers: the value of {name!r} holds a control character")
        checked.append((name.lower(), value.strip(" \t")))
    return ExplainRequest(
        source=source.strip(),
        method=method,
        authority=authority,
        target=target,
        headers=tuple(checked),
        namespace=namespace or "default",
        pick=pick or None,
    )


def _field(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep:
        raise ExplainError(f"headers: {line!r} is not 'name: value'")
    return name.strip(), value


def split_url(url: str) -> tuple[str, str]:
    """`http://HOST[:PORT]/PATH?QUERY` (or without `http://`) → (host[:port] lower-cased,
    path with query as written; `/` when empty). The fragment is not sent, so dropped."""
    rest = url
    scheme, sep, after = url.partition("://")
    if sep:
        if scheme.lower() != "http":
            raise ExplainError(
                f"url: {scheme}:// is not explained: apps send plain http to their sidecar"
                " (https goes through it as a CONNECT tunnel)"
            )
        rest = after
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    if not authority:
        raise ExplainError(f"url: {url!r} names no host")
    if "@" in authority:
        raise ExplainError("url: user information is not sent in a request target")
    if any(c in authority for c in " \t\r\n\\"):
        raise ExplainError(f"url: {authority!r} is not a host")
    host, colon, port = authority.rpartition(":")
    if colon and "]" not in port:
        if not _PORT.match(port) or not 0 < int(port) < 65536:
            raise ExplainError(f"url: {port!r} is not a port")
        if not host:
            raise ExplainError(f"url: {url!r} names no host")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in target):
        raise ExplainError("url: the path holds spaces or characters to percent-encode")
    if target.startswith("?"):
        target = "/" + target
    return authority.lower(), target or "/"
