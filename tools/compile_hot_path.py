"""Compile the data plane's hot path with mypyc, in place, and record what was compiled.

`python tools/compile_hot_path.py` (run by `make install`) compiles the modules
listed in `trellis.compiled.MODULES` into C extensions beside their sources
(`src/trellis/.../*.so`, plus mypyc's shared runtime `src/*__mypyc*.so`) and
writes `src/trellis/compiled-manifest.json` with each source's SHA-256, which
`trellis.compiled.verify` checks at import so that an edited source never runs
as its stale compiled copy. `--clean` removes all of it.

The build directory is `build/mypyc` (ignored by git). Needs gcc and the Python
headers, which a machine of this project's kind has.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# Loaded by path, not as `trellis.compiled`: importing the package runs the staleness
# check, which must not stop a rebuild or a clean.
_spec = importlib.util.spec_from_file_location("trellis_compiled", SRC / "trellis" / "compiled.py")
assert _spec is not None and _spec.loader is not None
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)


def clean() -> None:
    # Every extension in the package, not only those of the current list: a module
    # dropped from it must not keep a compiled copy that shadows its source.
    for suffix in EXTENSION_SUFFIXES:
        for path in compiled.PACKAGE_ROOT.rglob(f"*{suffix}"):
            path.unlink()
    for path in SRC.glob("*__mypyc*"):
        path.unlink()
    compiled.MANIFEST.unlink(missing_ok=True)


def build() -> None:
    clean()
    build_dir = ROOT / "build" / "mypyc"
    build_dir.mkdir(parents=True, exist_ok=True)
    # mypyc builds under ./build and copies each extension to its module's path relative
    # to the working directory: run it in build/mypyc, where `trellis` links to the
    # sources, so the extensions land beside them; its shared runtime lands in build/mypyc.
    link = build_dir / "trellis"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(compiled.PACKAGE_ROOT)
    sources = [str(compiled.source_path(m).relative_to(SRC)) for m in compiled.MODULES]
    mypyc = Path(sys.executable).with_name("mypyc")
    env = dict(os.environ, MYPYC_OPT_LEVEL="3")
    started = time.monotonic()
    result = subprocess.run(
        [str(mypyc), *sources], cwd=build_dir, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"mypyc failed ({result.returncode})")
    for runtime in build_dir.glob("*__mypyc*"):
        shutil.move(runtime, SRC / runtime.name)
    missing = [m for m in compiled.MODULES if not compiled.compiled_paths(m)]
    if missing:
        raise SystemExit(f"mypyc ran but produced no extension for: {', '.join(missing)}")
    sources = {m: compiled.source_path(m) for m in compiled.MODULES}
    manifest = {
        "sources": {m: compiled.digest(path) for m, path in sources.items()},
        "stats": {m: [p.stat().st_size, p.stat().st_mtime_ns] for m, p in sources.items()},
    }
    compiled.MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(
        f"compiled {len(compiled.MODULES)} modules with mypyc in {time.monotonic() - started:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args()
    if args.clean:
        clean()
        print("compiled modules removed: the sources run as they are")
    else:
        build()


if __name__ == "__main__":
    main()
