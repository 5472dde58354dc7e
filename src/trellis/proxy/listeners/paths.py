"""What both listeners do with a request's path before anything is matched against it.

The path is normalized with the listener's options (trellis.routing.paths:
RFC 3986 normalization, merged slashes, the escaped-slash action) and the
request head is changed in place, so route selection, the RBAC filters, the
access log and the request forwarded to the upstream all see the same path. A
path that cannot be served as sent is answered here: 400 (flag DPE) with the
reason, or the 307 of UNESCAPE_AND_REDIRECT.

Must not know routes or policies.
"""

from __future__ import annotations

from trellis.proxy.stack.exchange import Exchange
from trellis.routing.paths import PathOptions, PathRefused, normalize_target


def normalize_request_path(ex: Exchange, options: PathOptions) -> bool:
    """Normalize `ex.head.path` in place; False when the request was answered instead."""
    head = ex.head
    try:
        head.path = normalize_target(head.path, options)
    except PathRefused as e:
        if e.status == 307:
            ex.respond(307, b"", extra=[(b"location", e.location.encode("latin-1"))])
        else:
            ex.respond(e.status, f"{e.reason}\n".encode("latin-1", "replace"), flags="DPE")
        return False
    return True
