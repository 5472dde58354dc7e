"""The dashboard's session table and cookie parsing (pure, with a fake clock)."""

from __future__ import annotations

from trellis.control.ui.cookie import (
    COOKIE,
    clear_cookie_header,
    session_id_of,
    set_cookie_header,
)
from trellis.control.ui.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_holds_its_token_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(ttl_seconds=60, clock=clock)
    sid = sessions.open("tok")
    assert sessions.token_of(sid) == "tok"
    clock.now += 59.9
    assert sessions.token_of(sid) == "tok"
    clock.now += 0.2
    assert sessions.token_of(sid) is None
    assert len(sessions) == 0  # dropped on sight


def test_unknown_and_closed_sessions_hold_nothing() -> None:
    sessions = Sessions()
    sid = sessions.open("tok")
    assert sessions.token_of(sid + "x") is None
    assert sessions.token_of("") is None
    sessions.close(sid)
    assert sessions.token_of(sid) is None
    sessions.close(sid)  # closing twice is harmless


def test_the_table_is_bounded_and_drops_the_oldest() -> None:
    sessions = Sessions(max_sessions=3)
    ids = [sessions.open(f"t{i}") for i in range(5)]
    assert len(sessions) == 3
    assert [sessions.token_of(i) for i in ids] == [None, None, "t2", "t3", "t4"]


def test_session_ids_are_random_and_long() -> None:
    sessions = Sessions()
    ids = {sessions.open("tok") for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) >= 43 for i in ids)  # 32 bytes, base64


def test_cookie_attributes_and_parsing() -> None:
    header = set_cookie_header("abc", 3600)
    assert header.startswith(f"{COOKIE}=abc;")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"):
        assert attribute in header
    assert "Max-Age=0" in clear_cookie_header()
    assert session_id_of(f"a=b; {COOKIE}=xyz; c=d") == "xyz"
    assert session_id_of("a=b") is None
    assert session_id_of(f"{COOKIE}=") is None
    assert session_id_of('bad"cookie\\') is None
