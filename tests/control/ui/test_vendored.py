"""The dashboard needs no internet: the libraries are vendored with their licences and the
digests VENDORED.md states, the pages load only from their own origin, and the package
ships every file."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

from trellis.control.ui.routes import STATIC

ROOT = Path(__file__).resolve().parents[3]
VENDOR = STATIC / "vendor"


def test_vendored_files_match_their_stated_digests() -> None:
    stated = re.findall(
        r"^\s+([0-9a-f]{64})  (\S+/\S+)$", (VENDOR / "VENDORED.md").read_text(), re.M
    )
    files = {p.relative_to(VENDOR).as_posix() for p in VENDOR.glob("*/*")}
    assert {name for _, name in stated} == files
    for digest, name in stated:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    for library in ("cytoscape-3.35.0", "uplot-1.6.32"):
        assert (
            "Permission is hereby granted, free of charge"
            in (VENDOR / library / "LICENSE").read_text()
        )


def test_pages_load_only_from_their_own_origin() -> None:
    for page in [*STATIC.glob("*.html"), *STATIC.glob("*.css"), *STATIC.glob("js/*.js")]:
        text = page.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), page
        assert not re.search(r"""fetch\(\s*["'`]https?:""", text), page
        assert 'EventSource("http' not in text, page


def test_the_package_ships_every_dashboard_file() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["trellis"]
    package = STATIC.parents[2]  # src/trellis
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not package data"
