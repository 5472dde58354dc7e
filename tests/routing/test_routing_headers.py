"""Header mutations: append actions, remove-before-add, level order, validation."""

from __future__ import annotations

from typing import Any

import pytest
from tests.routing.routing_support import compile_doc, forward, only, route_error, vhost

from trellis.routing import HeaderMutation, HeaderToAdd, apply_header_mutations

BASE = [("Host", "svc"), ("X-A", "1"), ("x-a", "2"), ("x-b", "b")]


def add(name: str, value: str, action: str | None = None, **extra: Any) -> dict[str, Any]:
    option: dict[str, Any] = {"header": {"key": name, "value": value}, **extra}
    if action is not None:
        option["append_action"] = action
    return option


def request_headers(
    *options: dict[str, Any], remove: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    route = {
        **forward(),
        "request_headers_to_add": list(options),
        "request_headers_to_remove": list(remove),
    }
    return only(route).apply_request_headers(BASE)


def test_append_is_the_default() -> None:
    assert request_headers(add("x-a", "3")) == [*BASE, ("x-a", "3")]
    assert request_headers(add("x-new", "v", "APPEND_IF_EXISTS_OR_ADD")) == [*BASE, ("x-new", "v")]


def test_overwrite_replaces_every_value() -> None:
    out = request_headers(add("X-A", "3", "OVERWRITE_IF_EXISTS_OR_ADD"))
    assert out == [("Host", "svc"), ("x-b", "b"), ("x-a", "3")]
    assert request_headers(add("x-new", "v", "OVERWRITE_IF_EXISTS_OR_ADD")) == [
        *BASE,
        ("x-new", "v"),
    ]


def test_overwrite_if_exists() -> None:
    assert request_headers(add("x-new", "v", "OVERWRITE_IF_EXISTS")) == BASE
    out = request_headers(add("x-b", "v", "OVERWRITE_IF_EXISTS"))
    assert out == [("Host", "svc"), ("X-A", "1"), ("x-a", "2"), ("x-b", "v")]


def test_add_if_absent_looks_at_the_headers_before_the_level() -> None:
    assert request_headers(add("x-a", "3", "ADD_IF_ABSENT")) == BASE
    # Two ADD_IF_ABSENT of one new name: both see it absent (as Envoy evaluates them).
    out = request_headers(add("x-n", "1", "ADD_IF_ABSENT"), add("x-n", "2", "ADD_IF_ABSENT"))
    assert out == [*BASE, ("x-n", "1"), ("x-n", "2")]


def test_legacy_append_bool() -> None:
    assert request_headers(add("x-b", "c", append=True)) == [*BASE, ("x-b", "c")]
    out = request_headers(add("x-b", "c", append=False))
    assert out == [("Host", "svc"), ("X-A", "1"), ("x-a", "2"), ("x-b", "c")]


def test_remove_then_add_overwrites_before_appends() -> None:
    out = request_headers(
        add("x-b", "appended"),
        add("x-b", "set", "OVERWRITE_IF_EXISTS_OR_ADD"),
        remove=("X-A",),
    )
    assert out == [("Host", "svc"), ("x-b", "set"), ("x-b", "appended")]


def test_empty_values_are_skipped_unless_kept() -> None:
    assert request_headers(add("x-e", "")) == BASE
    assert request_headers(add("x-e", "", keep_empty_value=True)) == [*BASE, ("x-e", "")]


def test_response_mutations() -> None:
    route = only(
        {
            **forward(),
            "response_headers_to_add": [add("x-served-by", "mesh", "OVERWRITE_IF_EXISTS_OR_ADD")],
            "response_headers_to_remove": ["server"],
        }
    )
    out = route.apply_response_headers([("Server", "app"), ("x-served-by", "app")])
    assert out == [("x-served-by", "mesh")]
    assert route.apply_request_headers([("Server", "x")]) == [("Server", "x")]


def levels(most_specific_wins: bool = False) -> list[tuple[str, str]]:
    def set_(value: str) -> list[dict[str, Any]]:
        return [add("x-level", value, "OVERWRITE_IF_EXISTS_OR_ADD"), add("x-trail", value)]

    t = compile_doc(
        {
            "most_specific_header_mutations_wins": most_specific_wins,
            "request_headers_to_add": set_("config"),
            "virtual_hosts": [
                vhost(
                    {**forward(), "request_headers_to_add": set_("route")},
                    request_headers_to_add=set_("vhost"),
                )
            ],
        }
    )
    return t.virtual_hosts[0].routes[0].apply_request_headers([])


def test_levels_apply_route_then_vhost_then_config_so_config_wins() -> None:
    out = levels()
    assert [v for n, v in out if n == "x-level"] == ["config"]
    assert [v for n, v in out if n == "x-trail"] == ["route", "vhost", "config"]


def test_most_specific_header_mutations_wins() -> None:
    out = levels(most_specific_wins=True)
    assert [v for n, v in out if n == "x-level"] == ["route"]
    assert [v for n, v in out if n == "x-trail"] == ["config", "vhost", "route"]


def test_pure_apply_does_not_touch_its_input() -> None:
    headers = [("a", "1")]
    m = HeaderMutation(remove=["a"], add=[HeaderToAdd("b", "2", "overwrite")])
    assert apply_header_mutations([m], headers) == [("b", "2")]
    assert headers == [("a", "1")]
    assert not HeaderMutation()
    assert apply_header_mutations([], headers) == headers


@pytest.mark.parametrize(
    ("route_fields", "path", "reason"),
    [
        (
            {"request_headers_to_add": [add(":path", "/x")]},
            "request_headers_to_add[0].header.key",
            "may not be set",
        ),
        (
            {"request_headers_to_add": [add("Host", "x")]},
            "request_headers_to_add[0].header.key",
            "may not be set",
        ),
        (
            {"request_headers_to_add": [add("bad name", "x")]},
            "request_headers_to_add[0].header.key",
            "invalid",
        ),
        (
            {"request_headers_to_add": [add("x", "a\r\nb: c")]},
            "request_headers_to_add[0].header.value",
            "CR or LF",
        ),
        (
            {"request_headers_to_add": [add("x", "v", "ADD_IF_ABSENT", append=True)]},
            "request_headers_to_add[0]",
            "both append and append_action",
        ),
        (
            {"request_headers_to_remove": [":authority"]},
            "request_headers_to_remove[0]",
            "may not be removed",
        ),
        (
            {"response_headers_to_remove": ["ok", "host"]},
            "response_headers_to_remove[1]",
            "may not be removed",
        ),
    ],
)
def test_mutation_errors(route_fields: dict[str, Any], path: str, reason: str) -> None:
    err = route_error({**forward(), **route_fields})
    assert err.path == f"virtual_hosts[0].routes[0].{path}"
    assert reason in err.reason


def test_raw_value() -> None:
    out = request_headers({"header": {"key": "x-raw", "raw_value": "dmFs"}})
    assert out[-1] == ("x-raw", "val")
