"""Prometheus HTTP SD target groups (pure) and the scrape token the control plane keeps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from trellis.control.metrics.scrape_token import SCRAPE_TOKEN_FILE, load_or_create
from trellis.control.metrics.targets import meta_label, target_groups
from trellis.model.base import Document
from trellis.model.loader import load_documents

DOCS = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: shop}
spec: {selector: {app: shop}, ports: [{port: 80}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: storefront}
spec: {selector: {tier: front}, ports: [{port: 80}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: shop, namespace: other}
spec: {selector: {app: shop}, ports: [{port: 80}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: shop-1, labels: {app: shop, version: v2, tier: front, "team.io/owner": ann}}
spec: {address: 10.0.0.5, inbound: {port: 15006}, metrics: {port: 15090}, mtls: true}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: cart-1, labels: {app: cart}}
spec: {address: "fd00::7", inbound: {port: 15006}, metrics: {port: 15091}}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: legacy, labels: {app: legacy}}
spec: {address: 10.0.0.9, inbound: {port: 15006}}
"""


def docs() -> list[Document]:
    return load_documents(DOCS)


def test_every_workload_with_a_metrics_port_is_a_target_with_its_labels() -> None:
    groups = target_groups(docs())
    assert [g["targets"] for g in groups] == [["[fd00::7]:15091"], ["10.0.0.5:15090"]]
    cart, shop = (g["labels"] for g in groups)
    assert shop == {
        "namespace": "default",
        "workload": "shop-1",
        "app": "shop",
        "version": "v2",
        "service": "shop,storefront",  # only the Services of its own namespace
        "mtls": "true",
        "__metrics_path__": "/metrics",
        "__scheme__": "http",
        "__meta_trellis_label_app": "shop",
        "__meta_trellis_label_version": "v2",
        "__meta_trellis_label_tier": "front",
        "__meta_trellis_label_team_io_owner": "ann",
    }
    assert cart["version"] == "" and cart["service"] == "" and cart["mtls"] == "false"


def test_no_workload_no_target() -> None:
    assert target_groups([]) == []
    assert meta_label("a.b/c-d") == "__meta_trellis_label_a_b_c_d"


def test_the_scrape_token_is_made_once_and_kept_0600(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    path = tmp_path / SCRAPE_TOKEN_FILE
    assert len(first.token) >= 32 and first.path == path
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.sha256 == hashlib.sha256(first.token.encode()).hexdigest()
    assert first.verify(first.token) and not first.verify(first.token + "x")
    assert not first.verify("") and not first.verify(None)
    assert load_or_create(tmp_path, preset="other").token == first.token


def test_a_preset_scrape_token_is_taken_on_first_start(tmp_path: Path) -> None:
    assert load_or_create(tmp_path, preset="chosen-token").token == "chosen-token"


def test_a_corrupt_scrape_token_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / SCRAPE_TOKEN_FILE).write_text("two words\n")
    with pytest.raises(ValueError, match="scrape token"):
        load_or_create(tmp_path)
