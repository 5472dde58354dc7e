"""Which modules run compiled (mypyc), and a guard against running stale compiled code.

The data plane's per-request path is compiled with mypyc (`make` runs
`tools/compile_hot_path.py`): the same typed Python, turned into C extension modules
that sit next to their sources. Compiled, the sidecar pair carries about 1.4-1.7x
the requests per second (docs/benchmarks.md). Nothing else changes: remove the
`.so` files (`make clean-compiled`) and the sources run as they are.

A compiled module shadows its `.py` (the import system prefers extensions), so
an edited source with an old `.so` beside it would silently run the old code.
The build records each source's SHA-256 (and its size and mtime, so that an
untouched file is not hashed again at every start) in `compiled-manifest.json`;
`verify` (run when `trellis` is imported) refuses to go on when a compiled
module's source no longer matches, naming the file and the fix.

Compiled code can fail where the sources do not (mypyc narrows types and checks
declared types at run time), and the sources can fail where compiled code does not
(what mypyc tolerates or optimises away): the suite runs against the compiled
modules, and `make test` runs the unit tests of the hot path a second time on the
sources, with `TRELLIS_INTERPRETED=1` (tests/conftest.py calls `prefer_sources`).

Must not import anything of Trellis: it runs before everything else.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

# The per-request path of the sidecar: HTTP/1 codec, listeners, the forwarding
# stack, telemetry, and the route table it evaluates per request.
MODULES: tuple[str, ...] = (
    "trellis.authz.engine",
    "trellis.authz.matchers",
    "trellis.authz.request",
    "trellis.proxy.config.resources",
    "trellis.proxy.config.state",
    "trellis.proxy.config.types",
    "trellis.proxy.http1.errors",
    "trellis.proxy.http1.framing",
    "trellis.proxy.http1.head",
    "trellis.proxy.http1.reader",
    "trellis.proxy.http1.writer",
    "trellis.proxy.listeners.acceptor",
    "trellis.proxy.listeners.inbound",
    "trellis.proxy.listeners.outbound",
    "trellis.proxy.listeners.paths",
    "trellis.proxy.listeners.server",
    "trellis.proxy.stack.action",
    "trellis.proxy.stack.balance",
    "trellis.proxy.stack.breaker",
    "trellis.proxy.stack.budget",
    "trellis.proxy.stack.chain",
    "trellis.proxy.stack.cluster",
    "trellis.proxy.stack.context",
    "trellis.proxy.stack.core",
    "trellis.proxy.stack.exchange",
    "trellis.proxy.stack.fault",
    "trellis.proxy.stack.hosts",
    "trellis.proxy.stack.locality",
    "trellis.proxy.stack.mirror",
    "trellis.proxy.stack.outlier",
    "trellis.proxy.stack.pool",
    "trellis.proxy.stack.ratelimit",
    "trellis.proxy.stack.retry",
    "trellis.proxy.stack.split",
    "trellis.proxy.stack.targets",
    "trellis.proxy.stack.tunnel",
    "trellis.proxy.telemetry.metrics",
    "trellis.proxy.telemetry.otlpwire",
    "trellis.proxy.telemetry.recorder",
    "trellis.proxy.telemetry.tracecontext",
    "trellis.proxy.telemetry.tracer",
    "trellis.routing.actions",
    "trellis.routing.domains",
    "trellis.routing.fault",
    "trellis.routing.hashing",
    "trellis.routing.headers",
    "trellis.routing.matchers",
    "trellis.routing.paths",
    "trellis.routing.ratelimit",
    "trellis.routing.retry",
    "trellis.routing.rewrite",
    "trellis.routing.route",
    "trellis.routing.table",
)

PACKAGE_ROOT = Path(__file__).resolve().parent  # .../trellis
MANIFEST = PACKAGE_ROOT / "compiled-manifest.json"


class StaleCompiledModule(ImportError):
    pass


def source_path(module: str) -> Path:
    parts = module.split(".")
    if parts[0] != "trellis":
        raise ValueError(f"{module} is not a trellis module")
    return PACKAGE_ROOT.joinpath(*parts[1:]).with_suffix(".py")


def compiled_paths(module: str) -> list[Path]:
    """The extension files that would shadow `module`'s source (normally none or one)."""
    source = source_path(module)
    return [p for s in EXTENSION_SUFFIXES if (p := source.with_suffix(s)).exists()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_modules() -> list[str]:
    """The modules of MODULES that have a compiled extension beside their source."""
    return [m for m in MODULES if compiled_paths(m)]


def problems() -> list[str]:
    """Why the compiled modules cannot be trusted (empty when they can, or when none exist)."""
    present = compiled_modules()
    if not present:
        return []
    try:
        manifest = json.loads(MANIFEST.read_text())
        recorded = manifest["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"compiled modules exist but {MANIFEST.name} is missing or unreadable"]
    if sorted(recorded) != sorted(MODULES):
        # A module dropped from the list would keep its extension, unchecked.
        return ["the list of compiled modules changed since the build"]
    stats = manifest.get("stats", {})
    found = []
    for module in present:
        source = source_path(module)
        try:
            st = source.stat()
        except FileNotFoundError:
            continue  # an installed package without sources: nothing to compare
        if stats.get(module) == [st.st_size, st.st_mtime_ns]:
            continue  # untouched since the build: no need to hash it (start-up cost)
        if recorded.get(module) != digest(source):
            found.append(f"{source} changed since it was compiled")
    return found


def verify() -> None:
    """Raise StaleCompiledModule when a compiled module would run code its source lost."""
    found = problems()
    if found:
        raise StaleCompiledModule(
            "; ".join(found) + ": run `make install` to recompile, or `make clean-compiled`"
            " to run the sources"
        )


def describe() -> str:
    """One line for logs: how the hot path runs."""
    count = len(compiled_modules())
    if count == 0:
        return "hot path interpreted (no compiled modules)"
    return f"hot path compiled with mypyc ({count} of {len(MODULES)} modules)"


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the hot-path modules as their `.py` sources, ahead of their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in MODULES:
            return None
        source = source_path(fullname)
        loader = importlib.machinery.SourceFileLoader(fullname, str(source))
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


def prefer_sources() -> None:
    """From now on, import the hot path from its sources even where it is compiled (for the
    tests' interpreted pass; call it before any of those modules is imported)."""
    loaded = [m for m in MODULES if m in sys.modules]
    if loaded:
        raise RuntimeError(f"already imported compiled: {', '.join(loaded)}")
    if not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def running_compiled(module: ModuleType) -> bool:
    """Whether an imported module is its compiled extension."""
    return not str(getattr(module, "__file__", "")).endswith(".py")
