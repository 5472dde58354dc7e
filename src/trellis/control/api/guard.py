"""The API's door: the admin token before any body is read, and bounds on what is read.

An ASGI middleware in front of every route. The rule: **only the admin sends
bodies** (every route that takes one needs the token; a test holds the routes to
it), so a request that declares a body is answered 401 before a byte of the body
is read when the token is missing or wrong. Then, in order:
  1. `Content-Length` over `API_MAX_BODY_BYTES`: 413 before reading;
  2. the body is read, counting; past the limit (a chunked body can say no length):
     413, with at most the limit buffered;
  3. a JSON body (the declared type, or none) nested deeper than `MAX_JSON_DEPTH`:
     400, before anything parses it;
  4. the route gets the body as read (one message), and FastAPI parses it once.
A refusal that leaves body bytes unread also says `Connection: close`: the server
does not drain what it refused (clients that send big bodies can send
`Expect: 100-continue`, as curl does, and get the answer before sending them).
Refusals are `{"error": ...}` bodies like every other API error; a 413 also names
the bound in `limit`.

Requests without a body pass through untouched: the route's own dependency
checks the token where one is needed (reads are open but for join tokens).
Owns the order of these checks; the bounds are `trellis.control.limits`', the
token check is `deps.token_refusal`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trellis.control.api.deps import TokenVerifier, token_refusal
from trellis.control.limits import (
    API_MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    JsonTooDeep,
    check_json_depth,
    size_text,
)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the guard needs of a request's head (pure: built from the ASGI scope)."""

    content_length: int | None  # None: not declared (chunked, or no body)
    chunked: bool
    content_type: str
    authorization: str | None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def json(self) -> bool:
        """FastAPI parses the body as JSON: the type says JSON, or there is none."""
        media = self.content_type.partition(";")[0].strip().lower()
        return not media or media == "application/json" or media.endswith("+json")

    @classmethod
    def of(cls, scope: Scope) -> RequestHead:
        length: int | None = None
        chunked = False
        content_type = ""
        authorization: str | None = None
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "content-length":
                if value.strip().isdigit():
                    length = int(value)
                else:  # (the HTTP parser refuses those) a body all the same, of unknown length
                    chunked = True
            elif name == "transfer-encoding":
                chunked = True
            elif name == "content-type":
                content_type = value
            elif name == "authorization":
                authorization = value
        return cls(length, chunked, content_type, authorization)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def before_body(head: RequestHead, tokens: TokenVerifier, max_body: int) -> Refusal | None:
    """The refusal owed to a request with a body before reading any of it, if any."""
    if not head.has_body:
        return None
    refusal = token_refusal(tokens, head.authorization)
    if refusal is not None:
        return Refusal(401, {"error": refusal}, (("www-authenticate", "Bearer"),))
    if head.content_length is not None and head.content_length > max_body:
        return too_large(max_body, head.content_length)
    return None


def too_large(max_body: int, length: int | None = None) -> Refusal:
    said = f"is {length} bytes" if length is not None else "goes on"
    return Refusal(
        413,
        {
            "error": f"the request body {said}; the API accepts at most {size_text(max_body)}",
            "limit": max_body,
        },
    )


def too_deep(exc: JsonTooDeep) -> Refusal:
    return Refusal(400, {"error": f"invalid request: {exc}", "limit": exc.limit})


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client went away before its body ended."""


async def read_body(receive: Receive, max_body: int) -> bytes:
    """The whole body; _TooLarge as soon as it passes `max_body` (never holding more)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise _TooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class RequestGuard:
    """ASGI middleware: `RequestGuard(app, tokens)`; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenVerifier,
        max_body: int = API_MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body = max_body
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = RequestHead.of(scope)
        if not head.has_body:
            await self.app(scope, receive, send)
            return
        refusal = before_body(head, self.tokens, self.max_body)
        if refusal is not None:
            await _answer(send, refusal, close=True)
            return
        try:
            body = await read_body(receive, self.max_body)
        except _TooLarge:
            await _answer(send, too_large(self.max_body, head.content_length), close=True)
            return
        except _Gone:
            return
        if head.json:
            try:
                check_json_depth(body, self.max_json_depth)
            except JsonTooDeep as exc:
                await _answer(send, too_deep(exc), close=False)
                return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then whatever the server says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, refusal: Refusal, *, close: bool) -> None:
    payload = json.dumps(refusal.body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.encode(), value.encode()) for name, value in refusal.headers),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
