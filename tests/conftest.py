"""Suite-wide options. `--update-golden` rewrites golden files instead of comparing."""

from __future__ import annotations

import pytest
from hypothesis import settings

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
