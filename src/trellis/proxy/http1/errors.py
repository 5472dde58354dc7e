"""The codec's one error: a peer broke HTTP/1.1, with the status a server answers it with.

A `ProtocolError` from the request side is answered with its `status` (400,
413, 414, 431, 501, 505) and the connection is closed (RFC 9112 §2.2: a
server that cannot frame a message must not reuse the connection). From the
response side it means the upstream is broken: the proxy answers 502.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A message that cannot be accepted; `status` is the RFC answer when we are the server."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.reason!r})"
