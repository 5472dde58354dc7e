"""The hot path runs compiled, and a stale compiled module is refused (trellis/compiled.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from tests.conftest import INTERPRETED
from trellis import compiled


@pytest.mark.skipif(INTERPRETED, reason="the interpreted pass runs the sources on purpose")
def test_the_suite_runs_against_the_compiled_hot_path() -> None:
    # `make install` compiles it; tests that pass interpreted only would prove less.
    assert compiled.compiled_modules() == list(compiled.MODULES), compiled.describe()
    assert compiled.problems() == []
    import trellis.proxy.stack.exchange as exchange

    assert not exchange.__file__.endswith(".py")


def test_every_listed_module_exists() -> None:
    for module in compiled.MODULES:
        assert compiled.source_path(module).exists(), module


@pytest.fixture
def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package root holding one module, `trellis.proxy.http1.head`, as source only."""
    root = tmp_path / "trellis"
    source = root / "proxy" / "http1" / "head.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n")
    monkeypatch.setattr(compiled, "PACKAGE_ROOT", root)
    monkeypatch.setattr(compiled, "MANIFEST", root / "compiled-manifest.json")
    monkeypatch.setattr(compiled, "MODULES", ("trellis.proxy.http1.head",))
    return root


def _compile(root: Path) -> None:
    """What the build leaves: an extension beside the source and the manifest."""
    source = root / "proxy" / "http1" / "head.py"
    source.with_suffix(EXTENSION_SUFFIXES[0]).write_bytes(b"\x7fELF")
    manifest = {"sources": {"trellis.proxy.http1.head": compiled.digest(source)}}
    (root / "compiled-manifest.json").write_text(json.dumps(manifest))


def test_sources_alone_are_fine(fake_tree: Path) -> None:
    compiled.verify()
    assert compiled.describe() == "hot path interpreted (no compiled modules)"


def test_a_fresh_build_is_trusted(fake_tree: Path) -> None:
    _compile(fake_tree)
    compiled.verify()
    assert compiled.describe() == "hot path compiled with mypyc (1 of 1 modules)"


def test_an_edited_source_refuses_its_stale_extension(fake_tree: Path) -> None:
    _compile(fake_tree)
    (fake_tree / "proxy" / "http1" / "head.py").write_text("X = 2\n")
    with pytest.raises(compiled.StaleCompiledModule) as caught:
        compiled.verify()
    message = str(caught.value)
    assert "head.py changed since it was compiled" in message
    assert "make install" in message


def test_an_extension_without_a_manifest_is_refused(fake_tree: Path) -> None:
    _compile(fake_tree)
    (fake_tree / "compiled-manifest.json").unlink()
    with pytest.raises(compiled.StaleCompiledModule, match=r"compiled-manifest\.json is missing"):
        compiled.verify()


def test_importing_trellis_runs_the_check() -> None:
    # In a fresh interpreter, with `compiled.problems` forced to report: the import fails.
    path = compiled.__file__
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('trellis.compiled', {path!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "mod.problems = lambda: ['x.py changed since it was compiled']\n"
        "sys.modules['trellis.compiled'] = mod\n"
        "import trellis\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "StaleCompiledModule: x.py changed since it was compiled" in result.stderr


def test_a_changed_module_list_refuses_the_old_build(
    fake_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compile(fake_tree)
    other = fake_tree / "proxy" / "http1" / "reader.py"
    other.write_text("Y = 1\n")
    monkeypatch.setattr(
        compiled, "MODULES", ("trellis.proxy.http1.head", "trellis.proxy.http1.reader")
    )
    with pytest.raises(compiled.StaleCompiledModule, match="list of compiled modules changed"):
        compiled.verify()


def test_the_interpreted_pass_imports_the_sources() -> None:
    """`TRELLIS_INTERPRETED=1` (make test's second pass over the hot path's unit tests)
    loads every hot-path module from its source even beside its extension."""
    code = (
        "from trellis import compiled; compiled.prefer_sources(); import importlib;"
        "mods = [importlib.import_module(m) for m in compiled.MODULES];"
        "print(sum(compiled.running_compiled(m) for m in mods), len(mods))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", str(len(compiled.MODULES))]
    if INTERPRETED:
        import trellis.proxy.listeners.server as server

        assert not compiled.running_compiled(server)
