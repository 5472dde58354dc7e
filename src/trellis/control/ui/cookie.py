"""The session cookie, for reads only: an ASGI middleware in front of the API.

A GET or HEAD that carries no `Authorization` header and no body but a live
`trellis_session` cookie goes on as if it carried `Authorization: Bearer <the token
the session was opened with>`; every route then applies its usual check, so the
cookie can read exactly what the admin token can read, and nothing else. Any other method passes
untouched: the cookie never authorises a write, so a cross-site form cannot use it
(and the cookie is SameSite=Strict besides). Owns the cookie's name and attributes.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from trellis.control.ui.sessions import Sessions

COOKIE = "trellis_session"
READ_METHODS = frozenset({"GET", "HEAD"})


def set_cookie_header(session_id: str, max_age: int) -> str:
    """HttpOnly (no script reads it), SameSite=Strict (no other site sends it), whole API.

    Not `Secure`: the API is plain HTTP on 127.0.0.1 by default (DESIGN §8); put it
    behind TLS before exposing it."""
    return f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


def clear_cookie_header() -> str:
    return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


def session_id_of(cookie_header: str) -> str | None:
    """The session id in a `Cookie:` header's value, if any (a malformed header: none)."""
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


class SessionCookie:
    """ASGI middleware: `SessionCookie(app, sessions)`; see the module docstring."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in READ_METHODS:
            token = self._token(scope)
            if token is not None:
                headers = [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)

    def _token(self, scope: Scope) -> str | None:
        cookies: list[str] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                return None  # an explicit credential wins, right or wrong
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None  # only the admin sends bodies (guard.py), even with a GET
            if name == b"cookie":
                cookies.append(value.decode("latin-1"))
        for header in cookies:
            session_id = session_id_of(header)
            if session_id is not None:
                return self.sessions.token_of(session_id)
        return None
