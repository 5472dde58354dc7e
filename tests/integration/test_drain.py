"""A rolling restart with no retry policy fails nothing: a `trellis run` told to stop
deregisters, then keeps serving while callers still send (their sidecars hear of the
removal with the control plane's next push), and only then stops accepting and drains
(run/runner.py `_stop`, ProxyApp.quiesce). Before, it stopped accepting at once: with
no retry policy a rolling restart failed calls with 503 UF (6 of ~1,400 measured, and
1 per run of this test with `--drain-delay 0`, twice in two runs)."""

from __future__ import annotations

import signal
from functools import partial

import pytest

from tests.integration.dataplane import client_sidecar
from tests.integration.harness import Mesh, wait_for
from tests.integration.paced_load import PacedLoad
from tests.integration.traffic import SERVICE_PORT, service_yaml, start_members

# Serial: zero failures under a paced load is a figure about time.
pytestmark = [pytest.mark.integration, pytest.mark.serial]

URL = f"http://web:{SERVICE_PORT}/"


def endpoint_names(mesh: Mesh) -> set[str]:
    return {e["workload"] for e in mesh.cp.endpoints("web")}


def test_a_rolling_restart_without_retries_fails_nothing(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}))  # no HTTPRoute: no retry policy
    old = start_members(mesh, "web", [{}, {}])
    client = client_sidecar(mesh)
    with client.client() as c:
        names = {m.workload for m in old}
        wait_for(lambda: {c.get(URL).json()["name"] for _ in range(20)} == names, 20, "both")
    with client.client() as c, PacedLoad(c, URL, 200.0) as load:
        wait_for(lambda: len(load.outcomes) > 100, 10, "load before the restart")
        new = start_members(mesh, "web", [{}, {}])  # surge: the new ones first
        everyone = {m.workload for m in old + new}
        wait_for(lambda: endpoint_names(mesh) == everyone, 20, "old and new instances")
        for member in old:
            member.proc.signal(signal.SIGTERM)
            assert member.proc.wait(30) == 0, "\n".join(member.proc.stderr_lines[-20:])
            gone = partial(lambda w: w not in endpoint_names(mesh), member.workload)
            wait_for(gone, 10, f"{member.workload} out of the endpoints")
        after = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) > after + 100, 10, "load after the restart")
    assert len(load.outcomes) >= 300, load.report()
    assert not load.failures(), load.report()
