"""The dashboard's logins: a bounded table of session ids, each holding the admin token it
was opened with, until it expires or is closed. Pure: no HTTP, the clock is given.

A session id is 32 random bytes (URL-safe base64) that only the browser's HttpOnly
cookie holds; the table is keyed by its SHA-256, so a lookup compares digests, never
the secret itself. The token kept is the one the login presented (the control plane
stores only the token's digest): each read made with the session is checked against
the admin token again, so a token changed on disk ends every session it opened.
At most `max_sessions` live at once; opening one more drops the oldest. The table
lives in the control plane's memory: a restart logs everyone out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SESSION_TTL_SECONDS = 12 * 3600
MAX_SESSIONS = 64


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Session:
    token: str
    expires_at: float


class Sessions:
    """`open(token) -> id`, `token_of(id) -> token | None`, `close(id)`."""

    def __init__(
        self,
        ttl_seconds: float = SESSION_TTL_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._live: OrderedDict[str, _Session] = OrderedDict()  # oldest first

    def open(self, token: str) -> str:
        """A new session for `token` (already verified by the caller); its id."""
        session_id = secrets.token_urlsafe(32)
        self._live[_key(session_id)] = _Session(token, self._clock() + self.ttl_seconds)
        while len(self._live) > self.max_sessions:
            self._live.popitem(last=False)
        return session_id

    def token_of(self, session_id: str) -> str | None:
        """The token of a live session; None when unknown, closed or expired (then dropped)."""
        key = _key(session_id)
        session = self._live.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._live[key]
            return None
        return session.token

    def close(self, session_id: str) -> None:
        self._live.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._live)
