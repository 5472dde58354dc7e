"""Strict types end to end: the CLI (YAML) and the REST API (JSON) give the same answer.

Against a real `trellis control`: a value of the wrong type is refused with the same
field path and reason whether `trellis apply` reads it from YAML or a client POSTs it
as JSON; and what the store gives back (`trellis get -o yaml`, the API's JSON) applies
again unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.cli.control_plane import TOKEN, ControlPlane
from tests.model.test_strict_types import EVERY_KIND, route, service, set_in, workload

KINDS = (
    "services",
    "workloads",
    "httproutes",
    "destinationpolicies",
    "authorizationpolicies",
    "meshconfigs",
)


def api(cp: ControlPlane) -> httpx.Client:
    return httpx.Client(
        base_url=cp.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


CASES = [
    (route(), "spec.rules.0.backendRefs.0.weight", True, "must be an integer, got boolean true"),
    (service(), "spec.ports.0.port", "9080", "must be an integer, got string '9080'"),
    (workload(), "spec.proxyless", "true", "must be a boolean (true or false), got string 'true'"),
    (
        route(fault={"delay": {"fixedDelay": "1s", "percent": 5}}),
        "spec.rules.0.fault.delay.percent",
        False,
        "must be a number, got boolean false",
    ),
    (
        route(timeouts={"request": "1s"}),
        "spec.rules.0.timeouts.request",
        1,
        "a duration is a string such as '10s' or '1m30s' (GEP-2257), got integer 1",
    ),
    (service(), "metadata.labels.app", 7, "must be a string, got integer 7"),
]


@pytest.mark.parametrize(("doc", "where", "bad", "reason"), CASES)
def test_yaml_through_the_cli_and_json_through_the_api_get_the_same_answer(
    cp: ControlPlane, tmp_path: Path, doc: dict[str, Any], where: str, bad: Any, reason: str
) -> None:
    raw = set_in(json.loads(json.dumps(doc)), where, bad)
    path = where.replace(".0", "[0]")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = cp.run("apply", "-f", str(manifest))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (_, problem) = r.stderr.splitlines()
    name = f"{raw['kind']} shop/{raw['metadata']['name']}"
    assert problem.startswith(f"  {manifest}:") and problem.endswith(f": {name}: {path}: {reason}")

    with api(cp) as client:
        answer = client.post("/api/v1/apply", json={"documents": [raw]})
        plural = {"Service": "services", "Workload": "workloads"}.get(raw["kind"], "httproutes")
        put = client.put(
            f"/api/v1/{plural}/{raw['metadata']['name']}", params={"namespace": "shop"}, json=raw
        )
    for response in (answer, put):
        assert response.status_code == 422, response.text
        (p,) = response.json()["problems"]
        assert p["document"] == name
        assert [(e["path"], e["reason"]) for e in p["errors"]] == [(path, reason)]


def test_what_the_store_gives_back_applies_again_unchanged(
    cp: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "every-kind.yaml"
    manifest.write_text(EVERY_KIND)
    first = cp.run("apply", "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 6

    # `trellis get -o yaml` of every kind (read back from SQLite), applied again.
    shown = tmp_path / "shown.yaml"
    texts = []
    for plural in KINDS:
        got = cp.run("get", plural, "-A", "-o", "yaml")
        assert got.returncode == 0, got.stderr
        texts.append(got.stdout)
    shown.write_text("---\n".join(texts))
    again = cp.run("apply", "-f", str(shown))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" unchanged\n") == 6, again.stdout

    # The API's JSON of each document, PUT back as it came.
    with api(cp) as client:
        for plural in KINDS:
            for item in client.get(f"/api/v1/{plural}").json()["items"]:
                meta = item["metadata"]
                put = client.put(
                    f"/api/v1/{plural}/{meta['name']}",
                    params={"namespace": meta.get("namespace", "default")},
                    json=item,
                )
                assert put.status_code == 200, put.text
                assert [c["action"] for c in put.json()["changes"]] == ["unchanged"]
