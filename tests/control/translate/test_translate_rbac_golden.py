"""Golden files: the inbound listeners (RBAC filters included) of fixtures/authz.yaml.

Refresh with `pytest tests/control/translate --update-golden`, then review the diff.
"""

from __future__ import annotations

import pytest
from tests.control.translate.translate_support import GOLDEN, HERE, dump, gen, load_push, node

from trellis.control.translate import LISTENER_TYPE

CASES = {
    "authz-sidecar": (node("sidecar", "shop", "api-a"), "trellis/inbound?address=10.0.0.31:15006"),
    "authz-proxyless": (
        node("proxyless", "shop", "ratings-a"),
        "trellis/inbound?address=0.0.0.0:50051",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_authz_golden(case: str, update_golden: bool) -> None:
    push = load_push((HERE / "fixtures" / "authz.yaml").read_text())
    n, listener = CASES[case]
    text = dump({LISTENER_TYPE: gen(n, push, LISTENER_TYPE, [listener])})
    path = GOLDEN / f"{case}.json"
    if update_golden:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden"
    assert text == path.read_text(), f"{case} differs from {path.name}: rerun with --update-golden"
