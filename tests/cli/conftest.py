"""One real `trellis control` per test module (tests use distinct names)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.cli.control_plane import ControlPlane, control_plane


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("control")) as plane:
        yield plane
