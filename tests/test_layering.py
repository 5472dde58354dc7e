"""Which parts of Trellis may import which, read from the sources: `ast`, nothing imported.

The picture (DESIGN.md, STYLE.md "A test that enforces the layering"):

- `trellis.wire`, the contract between the planes, imports nothing of trellis;
- `trellis.routing` and `trellis.authz` are pure policy: no event loop, socket or TLS,
  and neither plane (nor the CLI, the runner, the store);
- `trellis.model` (the resource model) knows neither plane;
- the data plane (`trellis.proxy`) never imports the control plane, the CLI, the runner
  or the store; the control plane never imports the data plane. What both must agree
  on comes from `trellis.wire` (and the pure `routing`, `authz`, `model`);
- a sans-IO module (its docstring's first paragraph says "sans-IO", or it is named
  `core`, or it lies in a sans-IO package) imports no asyncio, socket, ssl, selectors
  or uvloop and no listener, directly or through the trellis modules it imports.

Every import counts, also those inside functions and under `if TYPE_CHECKING:` (a
type-only import still ties the designs together), except for the sans-IO rule,
which is about what runs. A violation is reported as `file:line: importer imports
target (rule)`. The few known exceptions are listed in `EXCEPTIONS` with the reason
and what removes them; an exception that no longer occurs fails the test too, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
IO_MODULES = ("asyncio", "socket", "ssl", "selectors", "uvloop", "trellis.proxy.listeners")
# Packages whose every module is sans-IO (their __init__ says so for all of them).
SANS_IO_PACKAGES = ("trellis.proxy.http1",)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # dotted module name
    target: str  # the module imported (a `from M import name` of a submodule: M.name)
    path: Path
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`
    lazy: bool  # inside a function: loaded when that function first runs

    def where(self) -> str:
        """`src/trellis/...py:LINE`."""
        depth = len(self.importer.split(".")) + (self.path.name == "__init__.py")
        return f"{self.path.relative_to(self.path.parents[depth])}:{self.line}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    importers: tuple[str, ...]  # module prefixes the rule applies to
    forbidden: tuple[str, ...]  # module prefixes they may not import
    why: str


RULES = (
    Rule("wire is the bottom", ("trellis.wire",), ("trellis",), "the contract depends on nothing"),
    Rule(
        "policy is pure",
        ("trellis.routing", "trellis.authz"),
        (
            *IO_MODULES,
            "grpc",
            "trellis.proxy",
            "trellis.control",
            "trellis.run",
            "trellis.cli",
            "trellis.store",
        ),
        "route tables and RBAC are evaluated the same way by both planes, without I/O",
    ),
    Rule(
        "the model knows no plane",
        ("trellis.model",),
        ("trellis.proxy", "trellis.control", "trellis.run", "trellis.cli"),
        "the resource model is data and validation",
    ),
    Rule(
        "the data plane knows no control plane",
        ("trellis.proxy",),
        ("trellis.control", "trellis.cli", "trellis.run", "trellis.store", "trellis.demo"),
        "a sidecar speaks xDS and the wire contract, nothing else of the control plane",
    ),
    Rule(
        "the control plane knows no data plane",
        ("trellis.control",),
        ("trellis.proxy",),
        "what both planes share lives in trellis.wire (or routing, authz, model)",
    ),
)

# (importer, target) -> why it is allowed for now, and what removes it. Each must still
# occur: a stale entry fails the test.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # `trellis explain` simulates a sidecar on the config it would be sent, with the
    # sidecar's own decoders (so that the explanation cannot drift from what the proxy
    # does): the pure config decoders and HTTP/1 head helpers of the data plane.
    (
        "trellis.control.explain.config",
        "trellis.proxy.config.resources",
    ): "explain decodes as the proxy",
    (
        "trellis.control.explain.trail",
        "trellis.proxy.config.resources",
    ): "explain decodes as the proxy",
    (
        "trellis.control.explain.inbound",
        "trellis.proxy.config.resources",
    ): "explain decodes as the proxy",
    (
        "trellis.control.explain.outbound",
        "trellis.proxy.config.resources",
    ): "explain decodes as the proxy",
    (
        "trellis.control.explain.views",
        "trellis.proxy.config.resources",
    ): "explain decodes as the proxy",
    (
        "trellis.control.explain.inbound",
        "trellis.proxy.http1.head",
    ): "explain frames heads as the proxy",
    (
        "trellis.control.explain.inbound",
        "trellis.proxy.http1.framing",
    ): "explain drops the fields the proxy drops upstream",
    # Issue 11 removes these: private names of the request path's I/O modules, read by
    # explain (the inbound listener's app-port rule, the outbound listener's name checks,
    # the headers the exchange drops upstream). They move into pure modules of the new
    # stack (or trellis.wire), which explain may then import.
}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / "trellis").rglob("*.py"))}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    node: ast.AST, type_only: bool, lazy: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, type_only, lazy
        elif isinstance(child, ast.If) and _type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), True, lazy)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), type_only, lazy)
        else:
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _walk(child, type_only, inner)


@cache
def imports_of(module: str, src: Path = SRC) -> tuple[Import, ...]:
    path = sources(src)[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = sources(src)
    out: list[Import] = []
    for node, type_only, lazy in _walk(tree, False, False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in dict.fromkeys(targets):
            out.append(Import(module, target, path, node.lineno, type_only, lazy))
    return tuple(out)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _docstring_says_sans_io(module: str) -> bool:
    doc = ast.get_docstring(ast.parse(sources()[module].read_text())) or ""
    return "sans-io" in doc.split("\n\n", 1)[0].lower()


def sans_io_modules() -> list[str]:
    return [
        m
        for m in sources()
        if m.rpartition(".")[2] == "core"
        or ".core." in m
        or _under(m, SANS_IO_PACKAGES)
        or _docstring_says_sans_io(m)
    ]


def _runtime_closure(module: str, src: Path = SRC) -> Iterator[tuple[list[Import], str]]:
    """Every module `module` imports at run time, directly or through the trellis modules
    it imports, with the chain of imports that leads there. `module`'s own imports count
    wherever they are; in the modules it reaches, only what loading them loads (not the
    imports inside their functions: a PEM check that imports ssl when it runs). A
    package's `__init__` is followed only when it is imported itself (how a package
    bundles its modules is not what its sans-IO modules depend on)."""
    seen = {module}
    stack: list[tuple[str, list[Import]]] = [(module, [])]
    while stack:
        current, chain = stack.pop()
        for imp in imports_of(current, src):
            if imp.type_only or (imp.lazy and chain) or imp.target in seen:
                continue
            seen.add(imp.target)
            yield [*chain, imp], imp.target
            if imp.target in sources(src):
                stack.append((imp.target, [*chain, imp]))


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    found: list[str] = []
    excused: set[tuple[str, str]] = set()
    for module in sources():
        for imp in imports_of(module):
            for rule in RULES:
                if not _under(module, rule.importers) or not _under(imp.target, rule.forbidden):
                    continue
                if _under(imp.target, rule.importers):
                    continue  # within the layer itself (trellis.wire importing nothing)
                if (module, imp.target) in EXCEPTIONS:
                    excused.add((module, imp.target))
                    continue
                found.append(
                    f"{imp.where()}: {module} imports {imp.target} ({rule.name}: {rule.why})"
                )
    for module in sans_io_modules():
        for chain, loaded in _runtime_closure(module):
            if _under(loaded, IO_MODULES):
                via = " -> ".join(f"{i.target} ({i.where()})" for i in chain)
                found.append(f"{chain[0].where()}: sans-IO {module} loads {loaded} via {via}")
    return found, excused


def test_every_import_respects_the_layers() -> None:
    found, _ = violations()
    assert not found, "imports across the layers:\n" + "\n".join(found)


def test_every_exception_still_occurs() -> None:
    _, excused = violations()
    stale = sorted(set(EXCEPTIONS) - excused)
    assert not stale, f"remove these from EXCEPTIONS, they no longer occur: {stale}"


def test_the_sans_io_rule_applies_to_the_known_state_machines() -> None:
    marked = sans_io_modules()
    for module in ("trellis.proxy.http1.reader", "trellis.proxy.xds.protocol"):
        assert module in marked


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio\n", ["asyncio"]),
        ("from trellis.proxy.listeners import server\n", ["trellis.proxy.listeners.server"]),
        ("from trellis.proxy import helper\n", ["asyncio"]),  # through another module
        ("if TYPE_CHECKING:\n    import asyncio\n", []),
        ("def f():\n    import socket\n", ["socket"]),
        ("import json\n", []),
    ],
)
def test_the_closure_finds_what_a_module_loads(
    source: str, expected: list[str], tmp_path: Path
) -> None:
    """The reader itself, on a tree of its own: what a sans-IO module would be blamed for."""
    files = {
        "trellis/__init__.py": "",
        "trellis/fake.py": source,
        "trellis/proxy/__init__.py": "",
        "trellis/proxy/helper.py": "import asyncio\n",
        "trellis/proxy/listeners/__init__.py": "",
        "trellis/proxy/listeners/server.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    loaded = [m for _, m in _runtime_closure("trellis.fake", tmp_path) if _under(m, IO_MODULES)]
    assert loaded[:1] == expected
