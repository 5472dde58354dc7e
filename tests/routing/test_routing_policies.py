"""Per-route policies: timeouts, retries, hash policies, faults and mirrors (and inheritance)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.routing.routing_support import (
    FAULT_TYPE,
    FILTER_CONFIG_TYPE,
    compile_doc,
    fault_config,
    forward,
    only,
    route_error,
    table,
    vhost,
)

from trellis.routing import FaultPolicy, HashPolicy, RetryPolicy, hash_keys

# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "timeout"),
    [({}, None), ({"timeout": "0s"}, None), ({"timeout": "5s"}, 5.0), ({"timeout": "0.25s"}, 0.25)],
)
def test_timeout(action: dict[str, Any], timeout: float | None) -> None:
    assert only(forward(**action)).timeout == timeout


def test_max_stream_duration() -> None:
    route = only(forward(max_stream_duration={"max_stream_duration": "2s"}))
    assert route.max_stream_duration == 2.0 and route.timeout is None
    assert only(forward()).max_stream_duration is None


def test_negative_timeout_is_an_error() -> None:
    err = route_error(forward(timeout="-1s"))
    assert err.path == "virtual_hosts[0].routes[0].route.timeout"


# -- retries ------------------------------------------------------------------------------


def retry(**policy: Any) -> RetryPolicy:
    r = only(forward(retry_policy=policy)).retry
    assert r is not None
    return r


def test_retry_defaults() -> None:
    r = retry(retry_on="5xx")
    assert r.retry_on == {"5xx"}
    assert r.num_retries == 1  # Envoy's default when unset
    assert r.per_try_timeout is None
    assert r.retriable_status_codes == frozenset()
    assert (r.backoff_base, r.backoff_max) == (0.025, 0.25)
    assert only(forward()).retry is None


def test_retry_values() -> None:
    r = retry(
        retry_on=" connect-failure, reset ,retriable-status-codes,,",
        num_retries=7,
        per_try_timeout="1.5s",
        retriable_status_codes=[503, 429],
        retry_back_off={"base_interval": "0.05s"},
    )
    assert r.retry_on == {"connect-failure", "reset", "retriable-status-codes"}
    assert r.num_retries == 7
    assert r.per_try_timeout == 1.5
    assert r.retriable_status_codes == {429, 503}
    assert r.backoff_base == pytest.approx(0.05)
    assert r.backoff_max == pytest.approx(0.5)
    assert retry(num_retries=0).num_retries == 0
    assert retry(per_try_timeout="0s").per_try_timeout is None
    explicit = retry(retry_back_off={"base_interval": "0.1s", "max_interval": "0.3s"})
    assert explicit.backoff_base == pytest.approx(0.1)
    assert explicit.backoff_max == 0.3


@pytest.mark.parametrize(
    ("retry_on", "codes", "retried"),
    [
        ("5xx", [], {500, 501, 502, 503, 504, 599}),
        ("gateway-error", [], {502, 503, 504}),
        ("retriable-4xx", [], {409}),
        ("retriable-status-codes", [429, 503], {429, 503}),
        ("5xx", [429], {500, 501, 502, 503, 504, 599}),  # codes need retriable-status-codes
        ("connect-failure,reset", [503], set()),
        ("gateway-error,retriable-status-codes", [500], {500, 502, 503, 504}),
    ],
)
def test_should_retry_status(retry_on: str, codes: list[int], retried: set[int]) -> None:
    r = retry(retry_on=retry_on, retriable_status_codes=codes)
    statuses = {200, 201, 301, 400, 404, 409, 429, 500, 501, 502, 503, 504, 599}
    assert {s for s in statuses | retried if r.should_retry_status(s)} == retried


def test_should_retry_grpc() -> None:
    r = retry(retry_on="connect-failure,reset,unavailable,resource-exhausted")
    assert [c for c in range(17) if r.should_retry_grpc(c)] == [8, 14]
    every = retry(retry_on="cancelled,deadline-exceeded,internal,resource-exhausted,unavailable")
    assert [c for c in range(17) if every.should_retry_grpc(c)] == [1, 4, 8, 13, 14]
    assert not retry(retry_on="5xx").should_retry_grpc(14)


@pytest.mark.parametrize(
    ("retry_on", "connect", "refused", "unsent", "other", "timeout"),
    [
        ("connect-failure", True, False, False, False, False),
        ("reset", True, True, True, True, True),
        ("5xx", True, True, True, True, True),
        ("gateway-error", True, True, True, True, True),
        ("refused-stream", False, True, False, False, False),
        ("reset-before-request", True, False, True, False, False),
        ("retriable-status-codes", False, False, False, False, False),
        ("unavailable", False, False, False, False, False),
    ],
)
def test_should_retry_reset(
    retry_on: str, connect: bool, refused: bool, unsent: bool, other: bool, timeout: bool
) -> None:
    r = retry(retry_on=retry_on)
    assert r.should_retry_reset(connect_failure=True) is connect
    assert r.should_retry_reset(refused_stream=True) is refused
    assert r.should_retry_reset(sent=False) is unsent
    assert r.should_retry_reset() is other
    assert r.should_retry_per_try_timeout() is timeout


@pytest.mark.parametrize(
    ("policy", "field", "reason"),
    [
        ({"retry_on": "5xx,sometimes"}, "retry_on", "unknown retry condition(s) ['sometimes']"),
        ({"retriable_status_codes": [99]}, "retriable_status_codes", "not HTTP statuses"),
        ({"retry_back_off": {"base_interval": "0s"}}, "retry_back_off.base_interval", "positive"),
        (
            {"retry_back_off": {"base_interval": "1s", "max_interval": "0.5s"}},
            "retry_back_off.max_interval",
            "shorter",
        ),
        ({"retriable_headers": [{"name": "x"}]}, "retriable_headers", "not supported"),
    ],
)
def test_retry_errors(policy: dict[str, Any], field: str, reason: str) -> None:
    err = route_error(forward(retry_policy=policy))
    assert err.path == f"virtual_hosts[0].routes[0].route.retry_policy.{field}"
    assert reason in err.reason


def test_virtual_host_retry_policy_is_the_default() -> None:
    t = compile_doc(
        {
            "virtual_hosts": [
                vhost(
                    forward({"path": "/own"}, retry_policy={"retry_on": "reset", "num_retries": 3}),
                    forward(),
                    retry_policy={"retry_on": "5xx", "num_retries": 2},
                )
            ]
        }
    )
    own, inherited = t.virtual_hosts[0].routes
    assert own.retry is not None and (own.retry.retry_on, own.retry.num_retries) == (
        frozenset({"reset"}),
        3,
    )
    assert inherited.retry is not None and inherited.retry.retry_on == {"5xx"}


# -- hash policies ------------------------------------------------------------------------


def hash_policies(*policies: dict[str, Any]) -> tuple[HashPolicy, ...]:
    return only(forward(hash_policy=list(policies))).hash_policies


def test_hash_policy_kinds() -> None:
    header, ip, query, cookie, state = hash_policies(
        {"header": {"header_name": "X-User"}, "terminal": True},
        {"connection_properties": {"source_ip": True}},
        {"query_parameter": {"name": "id"}},
        {"cookie": {"name": "session"}},
        {"filter_state": {"key": "io.grpc.channel_id"}},
    )
    assert (header.kind, header.name, header.terminal) == ("header", "x-user", True)
    headers = {"x-user": "alice", "cookie": "a=1; session=s3; b=2"}
    assert header.key(headers) == "alice"
    assert header.key({}) is None
    assert (ip.kind, ip.key(headers, "10.0.0.1"), ip.key(headers)) == (
        "source_ip",
        "10.0.0.1",
        None,
    )
    assert query.key(headers, path="/x?id=7&id=8") == "7"
    assert query.key(headers, path="/x") is None
    assert cookie.key(headers) == "s3"
    assert cookie.key({"cookie": "sessionx=1"}) is None
    assert (state.kind, state.name, state.key(headers)) == (
        "filter_state",
        "io.grpc.channel_id",
        None,
    )


def test_header_hash_with_regex_rewrite() -> None:
    (policy,) = hash_policies(
        {
            "header": {
                "header_name": ":path",
                "regex_rewrite": {"pattern": {"regex": "\\?.*"}, "substitution": ""},
            }
        }
    )
    assert policy.key({":path": "/a?b=1"}) == "/a"


def test_hash_keys_stop_after_a_terminal_policy_with_a_key() -> None:
    policies = hash_policies(
        {"header": {"header_name": "x-a"}, "terminal": True},
        {"header": {"header_name": "x-b"}},
        {"connection_properties": {"source_ip": True}},
    )
    assert hash_keys(policies, {"x-a": "1", "x-b": "2"}, "ip") == ["1"]
    assert hash_keys(policies, {"x-b": "2"}, "ip") == ["2", "ip"]  # terminal yielded nothing
    assert hash_keys(policies, {}) == []


def test_hash_policy_errors() -> None:
    err = route_error(forward(hash_policy=[{"cookie": {"name": "c", "ttl": "1s"}}]))
    assert err.path == "virtual_hosts[0].routes[0].route.hash_policy[0].cookie.ttl"
    err = route_error(forward(hash_policy=[{"terminal": True}]))
    assert err.path == "virtual_hosts[0].routes[0].route.hash_policy[0].policy_specifier"


# -- faults -------------------------------------------------------------------------------


def fault(**config: Any) -> FaultPolicy | None:
    return only({**forward(), "typed_per_filter_config": fault_config(**config)}).fault


@pytest.mark.parametrize(
    ("percentage", "share"),
    [
        ({"numerator": 50}, 0.5),
        ({"numerator": 50, "denominator": "HUNDRED"}, 0.5),
        ({"numerator": 25, "denominator": "TEN_THOUSAND"}, 0.0025),
        ({"numerator": 100_000, "denominator": "MILLION"}, 0.1),
        ({"numerator": 150}, 1.0),  # capped
        ({}, 0.0),
    ],
)
def test_fault_fractions(percentage: dict[str, Any], share: float) -> None:
    f = fault(abort={"http_status": 503, "percentage": percentage})
    assert f is not None
    assert f.abort_fraction == pytest.approx(share)


def test_fault_decisions() -> None:
    f = fault(
        delay={"fixed_delay": "0.1s", "percentage": {"numerator": 10}},
        abort={"http_status": 503, "percentage": {"numerator": 500_000, "denominator": "MILLION"}},
    )
    assert f is not None
    assert f.delay_for(0.0) == pytest.approx(0.1)
    assert f.delay_for(0.0999) == pytest.approx(0.1)
    assert f.delay_for(0.1) is None
    assert f.abort_for(0.4999) == 503
    assert f.abort_for(0.5) is None
    delays = sum(f.delay_for(i / 1000) is not None for i in range(1000))
    aborts = sum(f.abort_for(i / 1000) is not None for i in range(1000))
    assert (delays, aborts) == (100, 500)


def test_grpc_abort_answers_200_with_a_grpc_status() -> None:
    f = fault(abort={"grpc_status": 14, "percentage": {"numerator": 100}})
    assert f is not None
    assert (f.abort_for(0.5), f.abort_grpc_status, f.abort_http_status) == (200, 14, None)
    assert f.delay_for(0.0) is None


def test_empty_fault_is_none() -> None:
    assert fault() is None
    assert only(forward()).fault is None


def test_fault_in_a_filter_config_wrapper_and_disabled() -> None:
    inner = {"@type": FAULT_TYPE, "abort": {"http_status": 500, "percentage": {"numerator": 100}}}
    wrapped = {"envoy.filters.http.fault": {"@type": FILTER_CONFIG_TYPE, "config": inner}}
    route = only({**forward(), "typed_per_filter_config": wrapped})
    assert route.fault is not None and route.fault.abort_for(0.9) == 500
    disabled = {"envoy.filters.http.fault": {"@type": FILTER_CONFIG_TYPE, "disabled": True}}
    t = compile_doc(
        {
            "virtual_hosts": [
                vhost(
                    forward({"path": "/off"}, name="off") | {"typed_per_filter_config": disabled},
                    forward(name="inherits"),
                    typed_per_filter_config=fault_config(
                        abort={"http_status": 502, "percentage": {"numerator": 100}}
                    ),
                )
            ]
        }
    )
    off, inherits = t.virtual_hosts[0].routes
    assert off.fault is None
    assert inherits.fault is not None and inherits.fault.abort_for(0.0) == 502


def test_most_specific_fault_wins() -> None:
    def abort(status: int) -> dict[str, Any]:
        return fault_config(abort={"http_status": status, "percentage": {"numerator": 100}})

    t = compile_doc(
        {
            "typed_per_filter_config": abort(500),
            "virtual_hosts": [
                vhost(
                    forward({"path": "/r"}) | {"typed_per_filter_config": abort(501)},
                    forward(),
                    domains=("a",),
                    typed_per_filter_config=abort(502),
                ),
                vhost(forward(), domains=("b",)),
            ],
        }
    )
    statuses = [
        r.fault.abort_for(0.0) if r.fault else None for vh in t.virtual_hosts for r in vh.routes
    ]
    assert statuses == [501, 502, 500]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"delay": {"header_delay": {}}}, "delay.header_delay"),
        ({"delay": {"percentage": {"numerator": 1}}}, "delay"),
        ({"abort": {"percentage": {"numerator": 1}}}, "abort"),
        ({"abort": {"header_abort": {}}}, "abort.header_abort"),
        ({"headers": [{"name": "x"}]}, "headers"),
        ({"response_rate_limit": {}}, "response_rate_limit"),
    ],
)
def test_fault_errors(config: dict[str, Any], field: str) -> None:
    err = route_error({**forward(), "typed_per_filter_config": fault_config(**config)})
    prefix = "virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault]"
    assert err.path == f"{prefix}.{field}"


def test_other_filters_per_route_configs_are_ignored() -> None:
    rbac = {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"}
    route = {**forward(), "typed_per_filter_config": {"envoy.filters.http.rbac": rbac}}
    # Registers the RBAC type for ParseDict.
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401

    assert only(route).fault is None


# -- mirrors ------------------------------------------------------------------------------


def test_mirrors() -> None:
    route = only(
        forward(
            request_mirror_policies=[
                {"cluster": "shadow", "runtime_fraction": {"default_value": {"numerator": 25}}},
                {"cluster": "all"},
                {
                    "cluster": "tiny",
                    "runtime_fraction": {
                        "default_value": {"numerator": 5, "denominator": "TEN_THOUSAND"}
                    },
                },
            ]
        )
    )
    assert route.mirrors == (("shadow", 0.25), ("all", 1.0), ("tiny", 0.0005))


def test_mirrors_most_specific_non_empty_list_wins() -> None:
    t = compile_doc(
        {
            "request_mirror_policies": [{"cluster": "config"}],
            "virtual_hosts": [
                vhost(
                    forward({"path": "/own"}, request_mirror_policies=[{"cluster": "route"}]),
                    forward(),
                    domains=("a",),
                    request_mirror_policies=[{"cluster": "vhost"}],
                ),
                vhost(forward(), domains=("b",)),
            ],
        }
    )
    assert [r.mirrors for vh in t.virtual_hosts for r in vh.routes] == [
        (("route", 1.0),),
        (("vhost", 1.0),),
        (("config", 1.0),),
    ]
    assert "config" in t.clusters()


def test_mirror_errors() -> None:
    err = route_error(forward(request_mirror_policies=[{"cluster": ""}]))
    assert err.path == "virtual_hosts[0].routes[0].route.request_mirror_policies[0].cluster"
    err = route_error(forward(request_mirror_policies=[{"cluster_header": "x"}]))
    assert err.path.endswith("request_mirror_policies[0].cluster_header")


def test_policies_apply_to_every_route_of_a_table() -> None:
    t = table(forward({"path": "/a"}, timeout="1s"), forward(timeout="2s"))
    assert [r.timeout for r in t.virtual_hosts[0].routes] == [1.0, 2.0]
