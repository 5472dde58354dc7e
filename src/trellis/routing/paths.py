"""Request path normalization: the one spelling of a path that routes, policies and the app see.

Owns how the sidecar applies the HttpConnectionManager's path options
(`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`), which
the control plane sets from MeshConfig `pathNormalization`. The proxy's
listeners normalize every request path with them before route selection and
authorization and forward the result; simulation (tests, `trellis explain`)
must call the same function with the same options, so it sees the path the
proxy matches.

What `normalize` (RFC 3986 §6.2.2, plus what a path cannot be read without):
- percent-encodings: a `%` not followed by two hex digits is refused (400), an
  encoded NUL (`%00`) too; encoded unreserved characters (letters, digits,
  `-._~`) are decoded once (`/%61dmin` is `/admin`; `%2561` stays `%2561`), and
  every other encoding is upper-cased (`%3b` is `%3B`);
- a raw backslash is a slash (Envoy's normalize_path and browsers read it so);
- a `;` in the path is refused (400): servlet containers drop `;name=value`
  from each segment (`/admin;x=1` and `/public/..;/admin` are `/admin` to
  them), other servers do not, so no single reading is safe; RFC 3986 does not
  make `;` a parameter delimiter for http, and `%3B` still carries the character;
- dot segments are removed (RFC 3986 §5.2.4), after decoding, so `/%2e%2e/` is
  one; `..` above the root stays at the root.
`merge_slashes` drops empty segments (`//admin` is `/admin`; a trailing slash
stays), in the same pass as the dot segments, so `/a//../b` is `/b` as Go's
`path.Clean` and Python's `normpath` read it. The escaped-slash action decides
`%2F` and `%5C`: KEEP_UNCHANGED leaves them (upper-cased when normalizing),
REJECT_REQUEST refuses the request (400), UNESCAPE_AND_FORWARD decodes them to
`/` and `\\` (which is a slash) before the rest, UNESCAPE_AND_REDIRECT does the
same and answers 307 to the result when there was one.

Not normalized: the query (everything from the first `?`, kept as sent), case
(paths are case-sensitive: `/ADMIN` is not `/admin`), trailing dots in a
segment (`/admin.` is its own path, except to Windows servers), and targets
that are not a path (`*`, a CONNECT's authority).

Idempotent: a normalized path normalizes to itself. Cost: a path with no `%`,
`\\`, `;`, `//` or `/.` is returned as it is after five substring tests.
Pure: no I/O; must not know about requests, routes or policies.
"""

from __future__ import annotations

from dataclasses import dataclass

# envoy...HttpConnectionManager.PathWithEscapedSlashesAction (0 is "implementation
# specific": the proxy config reads it as REJECT_REQUEST, see proxy/config/resources.py).
KEEP_UNCHANGED = 1
REJECT_REQUEST = 2
UNESCAPE_AND_REDIRECT = 3
UNESCAPE_AND_FORWARD = 4
ESCAPED_SLASH_ACTIONS = {
    KEEP_UNCHANGED: "KEEP_UNCHANGED",
    REJECT_REQUEST: "REJECT_REQUEST",
    UNESCAPE_AND_REDIRECT: "UNESCAPE_AND_REDIRECT",
    UNESCAPE_AND_FORWARD: "UNESCAPE_AND_FORWARD",
}

_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASH, _BACKSLASH = 0x2F, 0x5C


class PathRefused(Exception):
    """The path cannot be served as sent: answer `status` (400, or 307 to `location`)."""

    def __init__(self, status: int, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.location = location


@dataclass(frozen=True, slots=True)
class PathOptions:
    """The three HttpConnectionManager fields; the default is MeshConfig's default
    (`MERGE_SLASHES` with escaped slashes refused)."""

    normalize: bool = True
    merge_slashes: bool = True
    escaped_slashes: int = REJECT_REQUEST

    @property
    def active(self) -> bool:
        return self.normalize or self.merge_slashes or self.escaped_slashes != KEEP_UNCHANGED

    def __str__(self) -> str:
        return (
            f"normalize_path={self.normalize} merge_slashes={self.merge_slashes} "
            f"escaped_slashes={ESCAPED_SLASH_ACTIONS.get(self.escaped_slashes, '?')}"
        )


DEFAULT_OPTIONS = PathOptions()
UNCHANGED = PathOptions(normalize=False, merge_slashes=False, escaped_slashes=KEEP_UNCHANGED)


def normalize_target(target: str, options: PathOptions) -> str:
    """`target` (a path with its query, as `RequestHead.path` holds it) in normal form, the
    query as it was; raises PathRefused. A target already normal is returned as is."""
    if not target.startswith("/"):
        return target  # CONNECT (no path) or `OPTIONS *`
    if not _suspect(target):
        return target  # the usual request: five substring tests, no slicing
    end = target.find("?")
    path = target if end < 0 else target[:end]
    if not options.active or (end >= 0 and not _suspect(path)):
        return target
    normal, unescaped = _normalize(path, options)
    if end >= 0:
        normal += target[end:]
    if unescaped and options.escaped_slashes == UNESCAPE_AND_REDIRECT:
        raise PathRefused(307, "escaped slashes in the path: redirected to it unescaped", normal)
    return normal


def _suspect(text: str) -> bool:
    """Whether `text` has what normalization could change: an encoding, a backslash, a
    `;`, an empty or a dot segment (`/.well-known` too: the slow path keeps it)."""
    return "%" in text or "//" in text or "/." in text or "\\" in text or ";" in text


def _normalize(path: str, options: PathOptions) -> tuple[str, bool]:
    unescaped = False
    action = options.escaped_slashes
    if "%" in path and (options.normalize or action != KEEP_UNCHANGED):
        path, unescaped = _percent(path, options.normalize, action)
    if options.normalize:
        if ";" in path:
            raise PathRefused(400, "a `;` in the path (path parameters are refused)")
        if "\\" in path:
            path = path.replace("\\", "/")
    if options.normalize or options.merge_slashes:
        path = _segments(path, options.normalize, options.merge_slashes)
    return path, unescaped


def _percent(path: str, decode: bool, action: int) -> tuple[str, bool]:
    """Percent-encodings: unreserved ones decoded and the rest upper-cased (`decode`), and
    `%2F` / `%5C` as `action` says. Returns the path and whether a slash was unescaped."""
    out: list[str] = []
    start = 0
    unescaped = False
    i = path.find("%")
    while i >= 0:
        pair = path[i + 1 : i + 3]
        if len(pair) < 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            if decode:
                raise PathRefused(400, f"a malformed percent-encoding {path[i : i + 3]!r}")
            i = path.find("%", i + 1)
            continue
        code = int(pair, 16)
        if code in (_SLASH, _BACKSLASH):
            if action == REJECT_REQUEST:
                raise PathRefused(400, f"an escaped slash or backslash (%{pair}) in the path")
            if action in (UNESCAPE_AND_FORWARD, UNESCAPE_AND_REDIRECT):
                text = chr(code)
                unescaped = True
            elif decode:
                text = "%" + pair.upper()
            else:
                i = path.find("%", i + 3)
                continue
        elif not decode:
            i = path.find("%", i + 3)
            continue
        elif code == 0:
            raise PathRefused(400, "an encoded NUL (%00) in the path")
        elif chr(code) in _UNRESERVED:
            text = chr(code)
        else:
            text = "%" + pair.upper()
        out.append(path[start:i])
        out.append(text)
        start = i + 3
        i = path.find("%", start)
    if not out:
        return path, False
    out.append(path[start:])
    return "".join(out), unescaped


def _segments(path: str, dots: bool, merge: bool) -> str:
    """Dot segments removed (RFC 3986 §5.2.4) and, when `merge`, empty segments dropped (a
    trailing slash stays), in one pass over a path that starts with `/`."""
    segments = path.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for i in range(1, last + 1):
        segment = segments[i]
        if dots and segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        elif dots and segment == ".":
            if i == last:
                out.append("")
        elif merge and not segment and i != last:
            continue
        else:
            out.append(segment)
    return "/" + "/".join(out)
