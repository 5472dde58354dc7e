"""`trellis run --region R --zone Z --sub-zone S` registers the Workload's locality (the
control plane then groups its endpoints by locality in EDS and, with locality failover on,
orders them by the caller's zone: tests/control/translate/test_translate_resilience.py)."""

from __future__ import annotations

import pytest

from tests.integration.dataplane import run_service
from tests.integration.harness import Mesh

pytestmark = pytest.mark.integration


def test_trellis_run_registers_its_locality(mesh: Mesh) -> None:
    placed = run_service(
        mesh,
        "loc",
        workload="loc-a",
        run_args=("--region", "eu-west", "--zone", "eu-west-1a", "--sub-zone", "rack-7"),
    )
    plain = run_service(mesh, "loc", workload="loc-b")
    with mesh.cp.client() as c:
        a = c.get(f"/api/v1/workloads/{placed.workload}").json()
        b = c.get(f"/api/v1/workloads/{plain.workload}").json()
    assert a["spec"]["locality"] == {
        "region": "eu-west",
        "zone": "eu-west-1a",
        "subZone": "rack-7",
    }
    assert b["spec"]["locality"] == {"region": "", "zone": "", "subZone": ""}
