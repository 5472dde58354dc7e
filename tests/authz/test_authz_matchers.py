"""Permission and principal rules, one at a time: what each one matches."""

from __future__ import annotations

from typing import Any

import pytest
from tests.authz.authz_support import WEB, permission_engine, principal_engine, request

from trellis.authz import RequestView


def allowed_by_permission(permission: dict[str, Any], r: RequestView) -> bool:
    return permission_engine(permission).evaluate(r).allowed


def allowed_by_principal(principal: dict[str, Any], r: RequestView) -> bool:
    return principal_engine(principal).evaluate(r).allowed


def header(name: str, **match: Any) -> dict[str, Any]:
    return {"header": {"name": name, **match}}


def url_path(**match: Any) -> dict[str, Any]:
    return {"url_path": {"path": match}}


# -- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "r", "expected"),
    [
        (header(":method", string_match={"exact": "GET"}), request(method="GET"), True),
        (header(":method", string_match={"exact": "GET"}), request(method="POST"), False),
        (header(":path", string_match={"exact": "/a?x=1"}), request("/a", query="x=1"), True),
        (header(":path", string_match={"exact": "/a"}), request("/a", query="x=1"), False),
        (header(":path", string_match={"prefix": "/a"}), request("/a/b"), True),
        (
            header(":authority", string_match={"exact": "api"}),
            request(headers={"host": "api"}),
            True,
        ),
        (
            header("host", string_match={"exact": "api"}),
            request(headers={":authority": "api"}),
            True,
        ),
        (header("host", present_match=True), request(), False),
        (header("X-User", string_match={"exact": "u1"}), request(headers={"x-user": "u1"}), True),
        (header("x-user", string_match={"exact": "u1"}), request(headers={"x-user": "u2"}), False),
        (header("x-user", string_match={"exact": "u1"}), request(), False),
        (header("x-user", present_match=True), request(headers={"x-user": ""}), True),
        (header("x-user", present_match=True), request(), False),
        (header("x-user", present_match=True, invert_match=True), request(), True),
        (header("x-user", string_match={"exact": "u1"}, invert_match=True), request(), False),
        (
            header("x-user", string_match={"suffix": "-bot"}),
            request(headers={"x-user": "a-bot"}),
            True,
        ),
        (
            header("x-user", string_match={"exact": "U1", "ignore_case": True}),
            request(headers={"x-user": "u1"}),
            True,
        ),
        (
            header("x-user", string_match={"safe_regex": {"regex": "u[0-9]+"}}),
            request(headers={"x-user": "u12"}),
            True,
        ),
        (
            header("x-user", string_match={"safe_regex": {"regex": "u[0-9]+"}}),
            request(headers={"x-user": "xu12"}),
            False,  # RE2 full match
        ),
        (header("x-n", range_match={"start": 1, "end": 5}), request(headers={"x-n": "4"}), True),
        (header("x-n", range_match={"start": 1, "end": 5}), request(headers={"x-n": "5"}), False),
    ],
)
def test_header_rules(rule: dict[str, Any], r: RequestView, expected: bool) -> None:
    assert allowed_by_permission(rule, r) is expected
    assert allowed_by_principal(rule, r) is expected  # the same matcher on both sides


# -- paths and ports ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        ({"exact": "/api"}, "/api", True),
        ({"exact": "/api"}, "/api/", False),
        ({"prefix": "/api/"}, "/api/v1", True),
        ({"prefix": "/api/"}, "/apiary", False),
        ({"suffix": ".css"}, "/s/a.css", True),
        ({"contains": "/admin/"}, "/x/admin/y", True),
        ({"exact": "/API", "ignore_case": True}, "/api", True),
        ({"safe_regex": {"regex": "/v[12]/.*"}}, "/v2/x", True),
    ],
)
def test_url_path(match: dict[str, Any], path: str, expected: bool) -> None:
    r = request(path, query="a=b")  # the query never matters to url_path
    assert allowed_by_permission(url_path(**match), r) is expected
    assert allowed_by_principal(url_path(**match), r) is expected


def test_destination_port_and_range() -> None:
    assert allowed_by_permission({"destination_port": 8080}, request(port=8080))
    assert not allowed_by_permission({"destination_port": 8080}, request(port=8081))
    span = {"destination_port_range": {"start": 8000, "end": 8080}}
    assert allowed_by_permission(span, request(port=8000))
    assert allowed_by_permission(span, request(port=8079))
    assert not allowed_by_permission(span, request(port=8080))


# -- combinators --------------------------------------------------------------------------


GET = header(":method", string_match={"exact": "GET"})
ADMIN = url_path(prefix="/admin")


@pytest.mark.parametrize(
    ("rule", "r", "expected"),
    [
        ({"any": True}, request(), True),
        ({"and_rules": {"rules": [GET, ADMIN]}}, request("/admin", method="GET"), True),
        ({"and_rules": {"rules": [GET, ADMIN]}}, request("/admin", method="PUT"), False),
        ({"or_rules": {"rules": [GET, ADMIN]}}, request("/x", method="GET"), True),
        ({"or_rules": {"rules": [GET, ADMIN]}}, request("/x", method="PUT"), False),
        ({"not_rule": GET}, request(method="PUT"), True),
        ({"not_rule": GET}, request(method="GET"), False),
        ({"not_rule": {"not_rule": GET}}, request(method="GET"), True),
    ],
)
def test_permission_combinators(rule: dict[str, Any], r: RequestView, expected: bool) -> None:
    assert allowed_by_permission(rule, r) is expected


@pytest.mark.parametrize(
    ("rule", "r", "expected"),
    [
        ({"any": True}, request(), True),
        ({"and_ids": {"ids": [GET, ADMIN]}}, request("/admin"), True),
        ({"and_ids": {"ids": [GET, ADMIN]}}, request("/x"), False),
        ({"or_ids": {"ids": [GET, ADMIN]}}, request("/x", method="GET"), True),
        ({"not_id": ADMIN}, request("/admin"), False),
    ],
)
def test_principal_combinators(rule: dict[str, Any], r: RequestView, expected: bool) -> None:
    assert allowed_by_principal(rule, r) is expected


# -- identities and addresses -------------------------------------------------------------


def authenticated(**name: Any) -> dict[str, Any]:
    return {"authenticated": {"principal_name": name} if name else {}}


@pytest.mark.parametrize(
    ("rule", "principal", "expected"),
    [
        (authenticated(), WEB, True),  # any authenticated peer
        (authenticated(), "", False),  # plaintext or no client certificate
        (authenticated(exact=WEB), WEB, True),
        (authenticated(exact=WEB), WEB + "x", False),
        (authenticated(prefix="spiffe://trellis.local/ns/web/"), WEB, True),
        (authenticated(suffix="/sa/frontend"), WEB, True),
        (authenticated(safe_regex={"regex": ".+"}), WEB, True),
        (authenticated(safe_regex={"regex": ".*"}), "", False),  # "" is not authenticated
        ({"not_id": authenticated(exact=WEB)}, "", True),
    ],
)
def test_authenticated(rule: dict[str, Any], principal: str, expected: bool) -> None:
    assert allowed_by_principal(rule, request(principal=principal)) is expected


def cidr(prefix: str, length: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"address_prefix": prefix}
    if length is not None:
        out["prefix_len"] = length
    return out


@pytest.mark.parametrize("kind", ["source_ip", "direct_remote_ip", "remote_ip"])
@pytest.mark.parametrize(
    ("rule", "source", "expected"),
    [
        (cidr("10.1.0.0", 16), "10.1.2.3", True),
        (cidr("10.1.0.0", 16), "10.2.0.1", False),
        (cidr("10.1.2.3", 32), "10.1.2.3", True),
        (cidr("10.1.2.3"), "192.168.0.1", True),  # no prefix_len: 0, every IPv4 address
        (cidr("10.1.2.3"), "::1", False),  # another family never matches
        (cidr("fd00::", 8), "fd12::1", True),
        (cidr("fd00::", 8), "10.0.0.1", False),
        (cidr("10.0.0.0", 8), "", False),  # no address
        (cidr("10.0.0.0", 8), "not-an-ip", False),
    ],
)
def test_cidr(kind: str, rule: dict[str, Any], source: str, expected: bool) -> None:
    assert allowed_by_principal({kind: rule}, request(source=source)) is expected


def test_request_view_parses_its_source_once() -> None:
    r = request(source="10.0.0.1")
    first = r.source_ip()
    assert first is not None and r.source_ip() is first
    assert "GET /?a=b" in repr(request(query="a=b"))
