"""Which hosts the admin port answers for (a DNS-rebinding page names its own host):
localhost, loopback addresses and the port's own addresses, with or without a port."""

from __future__ import annotations

import pytest

from trellis.proxy.listeners.admin import host_of, is_own_host

OWN = frozenset({"192.0.2.2"})  # the address a connection arrived on


@pytest.mark.parametrize(
    "authority",
    [
        "localhost",
        "localhost:15000",
        "127.0.0.1",
        "127.0.0.1:15000",
        "127.8.9.10:1",
        "[::1]",
        "[::1]:15000",
        "[::ffff:127.0.0.1]:15000",
        "192.0.2.2",
        "192.0.2.2:15000",
    ],
)
def test_own_hosts_are_answered(authority: str) -> None:
    assert is_own_host(authority, OWN)


@pytest.mark.parametrize(
    "authority",
    [
        "evil.example",
        "evil.example:15000",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "localhost.",
        "localhos",
        "192.0.2.3",
        "[::2]:15000",
        "10.0.0.1:15000",
        "0.0.0.0:15000",
        "shop:9080",
        "",
        ":15000",
    ],
)
def test_any_other_host_is_not(authority: str) -> None:
    assert not is_own_host(authority, OWN)


def test_the_host_is_read_without_its_port_and_brackets() -> None:
    assert [host_of(a) for a in ("a:1", "a", "[::1]:2", "[::1]", "a:b")] == [
        "a",
        "a",
        "::1",
        "::1",
        "a:b",
    ]
