"""Golden files: the fixture mesh translated for a proxyless and a sidecar node.

Refresh with `pytest tests/control/translate --update-golden`, then review the diff.
"""

from __future__ import annotations

import pytest
from tests.control.translate.translate_support import GOLDEN, closure, dump, node

from trellis.control.push.context import PushContext
from trellis.control.translate import CLUSTER_TYPE, LISTENER_TYPE, generate

# What each client subscribes to, as an app would name its targets.
CASES = {
    "proxyless": (
        node("proxyless", namespace="shop", workload="ratings-a"),
        [
            "reviews",
            "reviews.shop:9080",
            "ratings:50051",
            "frontend.web",
            "frontend",  # not in shop: NOT_FOUND
            "nosuch.shop",
            "trellis/inbound?address=0.0.0.0:50051",
        ],
    ),
    "sidecar": (
        node("sidecar", namespace="web", workload="frontend-a"),
        [
            "reviews.shop",  # the consumer route in web applies
            "reviews.shop.svc.mesh:9080",
            "ratings.shop:50051",
            "frontend",
            "frontend:9000",
            "trellis/inbound?address=10.0.1.5:15006",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, fixture_push: PushContext, update_golden: bool) -> None:
    n, listeners = CASES[case]
    result = closure(n, fixture_push, listeners)
    text = dump(result)
    path = GOLDEN / f"{case}.json"
    if update_golden:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden"
    assert text == path.read_text(), f"{case} differs from {path.name}: rerun with --update-golden"


def test_wildcard_golden(fixture_push: PushContext, update_golden: bool) -> None:
    n = node("sidecar", namespace="web", workload="frontend-a")
    result = {t: generate(n, fixture_push, t, None) for t in (LISTENER_TYPE, CLUSTER_TYPE)}
    text = dump(result)
    path = GOLDEN / "sidecar-wildcard.json"
    if update_golden:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run pytest with --update-golden"
    assert text == path.read_text()
