"""Regexes when a route is applied: what the model accepts, the proxy compiles; what the
proxy would refuse (RE2 syntax, the program-size limit, regexes the translator derives
from a long PathPrefix or gRPC method) is refused at apply, with the field path."""

from __future__ import annotations

import pytest
from tests.control.translate.translate_support import load_push
from tests.routing.test_routing_simulation import SERVICES, call, route_table, routes, to

from trellis.model.errors import InvalidDocuments
from trellis.model.loader import load_documents
from trellis.routing.regex import MAX_PROGRAM_SIZE

LIMIT = f"exceeds the limit {MAX_PROGRAM_SIZE}"
OVER = "/static/[a-zA-Z0-9._-]{0,200}/.*"  # 1021 instructions


def http_route(rules: str) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  parentRefs: [{{name: reviews, port: 9080}}]
  rules:
{rules}"""


def grpc_route(method: str) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {{name: g, namespace: shop}}
spec:
  parentRefs: [{{name: reviews, port: 9080}}]
  rules:
    - matches: [{{method: {method}}}]
      backendRefs: [{{name: a}}]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidDocuments) as info:
        load_documents(text, source="mesh.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            http_route(f"    - matches: [{{path: {{type: RegularExpression, value: '{OVER}'}}}}]"),
            "spec.rules[0].matches[0].path",
            f"invalid regular expression '{OVER}': regex program size 1021 {LIMIT}",
        ),
        (
            http_route(
                "    - matches: [{headers: [{name: x, type: RegularExpression,"
                f" value: '{OVER}'}}]}}]"
            ),
            "spec.rules[0].matches[0].headers[0]",
            LIMIT,
        ),
        (
            http_route(
                "    - matches: [{queryParams: [{name: q, type: RegularExpression,"
                f" value: '{OVER}'}}]}}]"
            ),
            "spec.rules[0].matches[0].queryParams[0]",
            LIMIT,
        ),
        (
            http_route("    - matches: [{path: {type: RegularExpression, value: '/a(?=b)'}}]"),
            "spec.rules[0].matches[0].path",
            "invalid perl operator: (?= (lookahead is not supported by RE2)",
        ),
        (
            http_route(f"    - matches: [{{path: {{type: PathPrefix, value: /{'a' * 990}}}}}]"),
            "spec.rules[0].matches[0].path",
            "value: path prefix too long: clients match the regex '/aaaa",
        ),
        (
            grpc_route(
                f"{{type: RegularExpression, service: '{'a' * 500}', method: '{'b' * 500}'}}"
            ),
            "spec.rules[0].matches[0].method",
            "service and method too long: clients match the regex '/(?:aaaa",
        ),
        (
            grpc_route(f"{{method: {'M' * 1000}}}"),
            "spec.rules[0].matches[0].method",
            "method too long",
        ),
    ],
)
def test_a_regex_the_proxies_would_refuse_is_refused_at_apply(
    text: str, where: str, reason: str
) -> None:
    (error,) = errors_of(text)
    assert f"{where}: " in error and reason in error, error
    assert "mesh.yaml" in error


def prefix_route(prefix: str) -> str:
    return http_route(
        f"    - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n"
        "      backendRefs: [{name: a}]\n"
        "      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch,"
        " replacePrefixMatch: /b}}}]\n"
    )


def accepted(text: str) -> bool:
    try:
        load_documents(text)
    except InvalidDocuments:
        return False
    return True


def test_the_longest_path_prefix_the_model_accepts_compiles_in_the_proxy() -> None:
    """The model's check mirrors the translator's segment regex: at the limit, both agree."""
    n = next(n for n in range(1000, 900, -1) if accepted(prefix_route("/" + "x" * n)))
    longest = "/" + "x" * n
    assert n < 1000 and not accepted(prefix_route(longest + "x"))
    table = route_table(load_push(SERVICES + "---" + prefix_route(longest)))
    route = call(table, longest + "/y")
    assert route is not None and route.rewrite_path(longest + "/y") == "/b/y"
    assert call(table, longest + "y") is None  # whole segments


def test_nested_quantifiers_route_through_the_translated_config() -> None:
    table = routes(
        "    - matches: [{path: {type: RegularExpression, value: '/(a+)+'}}]\n"
        "      backendRefs: [{name: regex}]\n"
        "    - backendRefs: [{name: root}]\n"
    )
    assert (route := call(table, "/" + "a" * 40)) is not None
    assert route.action.pick(0) == to("regex")  # type: ignore[attr-defined]
    assert (route := call(table, "/" + "a" * 40 + "!")) is not None
    assert route.action.pick(0) == to("root")  # type: ignore[attr-defined]


def test_re2_syntax_python_lacked_is_accepted_at_apply() -> None:
    table = routes(
        "    - matches: [{path: {type: RegularExpression, value: '/\\p{Greek}+/[[:digit:]]+'}}]\n"
        "      backendRefs: [{name: regex}]\n"
    )
    assert call(table, "/αβ/12".encode().decode("latin-1")) is not None
    assert call(table, "/ab/12") is None
