"""The real `trellis apply` of thousands of documents: all arrive, or none (functional only).

Speed is the benchmark's business (`python -m bench apply`, docs/benchmarks.md):
nothing here is timed. The manifest is the benchmark's own mix.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.apply import manifest
from tests.cli.control_plane import ControlPlane

COUNT = 4000
PLURALS = ("services", "workloads", "httproutes", "destinationpolicies")


def names_in(cp: ControlPlane, plural: str, namespace: str) -> set[str]:
    listed = cp.run("get", plural, "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return {d["metadata"]["name"] for d in json.loads(listed.stdout)["items"]}


def expected(plural: str) -> set[str]:
    prefix = {"services": "svc", "workloads": "wl", "httproutes": "route"}.get(plural, "dp")
    return {f"{prefix}-{i}" for i in range(COUNT // 4)}


def test_thousands_of_documents_all_arrive(cp: ControlPlane, tmp_path: Path) -> None:
    path = tmp_path / "bulk.yaml"
    path.write_text(manifest(COUNT, namespace="bulk"))
    r = cp.run("apply", "-f", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == COUNT and all(line.endswith(" created") for line in lines)
    assert lines[:4] == [
        "service/svc-0 created",
        "workload/wl-0 created",
        "httproute/route-0 created",
        "destinationpolicy/dp-0 created",
    ]
    for plural in PLURALS:
        assert names_in(cp, plural, "bulk") == expected(plural)
    again = cp.run("apply", "-f", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" unchanged\n") == COUNT


def test_a_dry_run_of_thousands_reports_each_and_stores_none(
    cp: ControlPlane, tmp_path: Path
) -> None:
    path = tmp_path / "dry.yaml"
    path.write_text(manifest(COUNT, namespace="bulk-dry"))
    r = cp.run("apply", "-f", str(path), "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == COUNT and all(line.endswith(" created (dry run)") for line in lines)
    for plural in PLURALS:
        assert names_in(cp, plural, "bulk-dry") == set()


def test_one_bad_document_among_thousands_applies_none(cp: ControlPlane, tmp_path: Path) -> None:
    text = manifest(COUNT, namespace="bulk-bad")
    # The last document, found bad by the CLI: weight `true` is no integer.
    local = tmp_path / "local.yaml"
    full = text + "---\n" + manifest(4, "bulk-bad").replace("weight: 90", "weight: true")
    local.write_text(full)
    r = cp.run("apply", "-f", str(local))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    bad_line = full[: full.index("weight: true")].count("\n") + 1
    assert r.stderr.splitlines() == [
        "error: 1 invalid document, nothing applied",
        f"  {local}:{bad_line}: HTTPRoute bulk-bad/route-0: spec.rules[0].backendRefs[0].weight:"
        " must be an integer, got boolean true",
    ]
    # A document in the middle, found bad by the control plane: a route to no service.
    remote = tmp_path / "remote.yaml"
    remote.write_text(text.replace("[{name: svc-500, port: 8080,", "[{name: nosuch, port: 8080,"))
    r2 = cp.run("apply", "-f", str(remote))
    assert r2.returncode == 1 and "Traceback" not in r2.stderr
    start = 1 + text.split("name: route-500,")[0].count("\n") - 2  # apiVersion, two lines up
    assert r2.stderr.splitlines() == [
        "error: 1 invalid document, nothing applied",
        f"  {remote}:{start}: HTTPRoute bulk-bad/route-500: spec.rules[0].backendRefs[0]:"
        " unknown service bulk-bad/nosuch",
    ]
    for plural in PLURALS:
        assert names_in(cp, plural, "bulk-bad") == set()
