"""The loader's bounds: nesting depth, alias expansion and cycles are refused with a line.

Each refusal is one problem naming the source and the line, raised as
`InvalidDocuments` like any invalid input (never RecursionError, never a structure
that expands to gigabytes once validated).
"""

from __future__ import annotations

import tracemalloc

import pytest

from trellis.model.errors import InvalidDocuments
from trellis.model.limits import MAX_DEPTH, MIN_ALIAS_EXPANSION
from trellis.model.loader import load_documents, load_stream
from trellis.model.yaml_stream import read_documents

SERVICE = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 9080}]
"""


def problem_of(text: str) -> str:
    with pytest.raises(InvalidDocuments) as info:
        load_documents(text, source="deep.yaml")
    (problem,) = info.value.problems
    (line,) = str(problem).splitlines()
    return line


def block_nesting(levels: int) -> str:
    """`levels` nested mappings in block style, one per line: the deepest is at line `levels`."""
    return "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "x\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (block_nesting(5000), MAX_DEPTH + 1),
        ("spec: " + "[" * 900 + "]" * 900 + "\n", 1),  # flow style (libyaml stops at 1000)
        ("- " * 5000 + "x\n", 1),
        (
            SERVICE + "---\n" + "a:\n" + "".join(f"{'  ' * i}- \n" for i in range(1, 400)),
            8 + MAX_DEPTH,
        ),
    ],
    ids=["block-mappings", "flow-sequences", "block-sequences", "second-document"],
)
def test_deep_nesting_is_one_problem_with_file_and_line(text: str, line: int) -> None:
    problem = problem_of(text)
    assert problem.startswith(f"deep.yaml:{line}: YAML: nested deeper than {MAX_DEPTH} levels")


def test_nesting_up_to_the_limit_is_read() -> None:
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"  # the root is level 1
    ((_, value),) = read_documents(text)
    lists, inner = 0, value["a"]
    while isinstance(inner, list):
        lists, inner = lists + 1, (inner[0] if inner else None)
    assert lists == MAX_DEPTH - 1


def laughs(levels: int, fan: int = 10) -> str:
    """The classic "billion laughs": each level a list of `fan` aliases to the one below."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def route_bomb(headers: int, matches: int, rules: int) -> str:
    """An HTTPRoute that VALIDATES once expanded: `rules` x `matches` x `headers` header
    matches written with aliases in a few KB. Pydantic makes one object per expanded
    header match, and the CLI sends them all as JSON."""
    hs = ", ".join(["&h {name: x-lol, value: lol}"] + ["*h"] * (headers - 1))
    ms = ", ".join([f"&m {{headers: [{hs}]}}"] + ["*m"] * (matches - 1))
    rs = ", ".join([f"&r {{matches: [{ms}]}}"] + ["*r"] * (rules - 1))
    return (
        "apiVersion: trellis.dev/v1alpha1\nkind: HTTPRoute\n"
        "metadata: {name: bomb, namespace: shop}\n"
        f"spec:\n  parentRefs: [{{name: reviews}}]\n  rules: [{rs}]\n"
    )


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_bound() -> None:
    tracemalloc.start()
    try:
        problem = problem_of(laughs(9))  # 10^9 strings once expanded
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "YAML: aliases expand this input by more than" in problem
    assert problem.startswith("deep.yaml:")
    assert peak < 20 * 2**20  # refused while reading: nothing was expanded


def test_a_bomb_shaped_like_a_resource_is_refused_before_validation() -> None:
    """Before the bound this loaded: 100 x 100 x 2 = 20,000 header matches from 1 KB."""
    text = route_bomb(headers=100, matches=100, rules=2)
    assert len(text) < 2000
    problem = problem_of(text)
    assert problem.startswith("deep.yaml:6: YAML: aliases expand this input by more than 65536")


def test_aliases_that_repeat_a_little_are_read() -> None:
    text = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop, labels: &labels {app: reviews, tier: web}}
spec:
  selector: *labels
  ports: [{port: 9080}]
"""
    (svc,) = load_documents(text)
    assert svc.spec.selector == svc.metadata.labels  # type: ignore[attr-defined]
    assert len(load_documents(route_bomb(headers=4, matches=4, rules=4))) == 1


def routes_repeating_a_match(count: int, repeats: int) -> str:
    """`count` HTTPRoutes, each repeating one match (about 60 nodes and characters) `repeats`
    times."""
    match = "&m {path: {type: PathPrefix, value: /api/v1/reviews}, method: GET}"
    matches = ", ".join([match] + ["*m"] * (repeats - 1))
    return "---\n".join(
        f"apiVersion: trellis.dev/v1alpha1\nkind: HTTPRoute\n"
        f"metadata: {{name: r{i}, namespace: shop}}\n"
        f"spec:\n  parentRefs: [{{name: reviews}}]\n  rules: [{{matches: [{matches}]}}]\n"
        for i in range(count)
    )


def test_the_alias_budget_is_the_input_s_own_length_above_a_floor() -> None:
    # 400 routes repeating a match 4 times: ~75,000 of expansion, past the floor but less
    # than the text; 4 times as many repeats is more than the text.
    fine = routes_repeating_a_match(400, repeats=4)
    assert len(fine) > MIN_ALIAS_EXPANSION
    assert len(load_stream(fine)) == 400
    with pytest.raises(InvalidDocuments) as info:
        load_stream(routes_repeating_a_match(400, repeats=16))
    (problem,) = info.value.problems
    assert "aliases expand this input by more than" in str(problem)


def test_an_alias_to_its_own_ancestor_is_refused() -> None:
    problem = problem_of("a: &a\n  b: *a\n")
    assert problem == (
        "deep.yaml:2: YAML: alias *a is inside the node it names (a recursive structure)"
    )


def test_empty_documents_are_skipped() -> None:
    assert len(load_documents("---\n" + SERVICE + "---\n---\n")) == 1
    assert load_documents("") == [] and load_documents("# nothing\n") == []


def test_a_yaml_error_is_one_line_with_its_line() -> None:
    problem = problem_of(SERVICE + "---\nkind: [unclosed\n")
    assert problem.startswith("deep.yaml:9: YAML: not valid YAML: ")
    assert "flow sequence at line 8" in problem
