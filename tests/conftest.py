"""Suite-wide options. `--update-golden` rewrites golden files instead of comparing.

`TRELLIS_INTERPRETED=1` runs the hot path from its sources even where it is compiled
(`make test` runs the hot path's unit tests so a second time: trellis/compiled.py).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from trellis import compiled

INTERPRETED = os.environ.get("TRELLIS_INTERPRETED") == "1"
if INTERPRETED:
    compiled.prefer_sources()

# No per-example deadline: one example stalled by a busy CI machine is not a failure
# (speed is measured by `make bench`, not by tests).
settings.register_profile("trellis", deadline=None)
settings.load_profile("trellis")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )
