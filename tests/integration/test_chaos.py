"""Chaos under load: 200 idempotent GETs a second through a client sidecar while the mesh
changes under them, and not one fails — across a route change (weights moved three
times), a control-plane restart, a rolling restart of every backend instance (each
drained by `trellis run` on SIGTERM), and certificate rotations (a 6 s certificate TTL:
every sidecar renews every 3 s); and >= 99.9% succeed when one of three endpoints is
SIGKILLed (sidecar and app at once).

What a user configures, and why:
- The mesh gives routes no retry policy by default (`MeshConfig.spec.defaults.retry` is
  unset: the translated route has none, control/translate/generators/sidecar.py). A user
  who wants requests to survive a dying instance sets `retry: {attempts: 2, backoff: 5ms}`
  on the route: with no `codes`, that retries connect failures and resets only (never a
  status the app chose), and the sidecar resends only idempotent requests once a byte may
  have reached the app. This module's route does so, on every rule. Without it (measured
  on a shared 2-core machine): the rolling restart failed 6 calls of ~1400 (503 UF: a
  drained instance stopped accepting at once, before every client had heard that it
  deregistered; `trellis run` now keeps serving until its callers are quiet, and
  test_drain.py checks a rolling restart with no retry policy), and the SIGKILL 531 of
  ~1900 (503 UF each time the dead endpoint was
  chosen, until its lease expired).
- Outlier detection on each Service (`consecutiveGatewayErrors: 3`, at most half the
  hosts ejected): a SIGKILLed instance refuses connections at once until its lease
  expires and EDS drops it (up to the 10 s lease), and it is chosen again and again while
  it is listed. Each connect failure is
  retried on another endpoint, but the circuit breaker's default `maxRetries` (3 retries
  in flight per destination, Envoy's default) refuses the retries beyond that: measured
  with issue 11's stack merged (main + pool + stack + config, a shared 2-core machine),
  19 calls of ~2,000 failed with 503 UO,UF (1%, the target is 0.1%). Three connect
  failures in a row eject the dead host instead, and the rest of the calls never meet it.
- The rolling restart surges: the new instances are started (and are endpoints) before
  the old ones get SIGTERM, one at a time, as a Deployment with maxSurge does.
- The short certificate TTL is applied after the control-plane restart: a sidecar whose
  certificate expired while the control plane was away (a 10 s TTL and a restart that
  took ~7 s under this load) never reconnected — its xDS stream and its renewal both
  presented the expired certificate. It now joins again with its join token
  (test_identity_recovery.py); the order here keeps this module about load.

One world for the module (control plane, three `web` instances: two v1, one v2, and the
test's own `trellis proxy`); the phases run in file order and each leaves the world
serving for the next. Each phase prints every failure with its status and flags.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar
from tests.integration.harness import Mesh, wait_for
from tests.integration.paced_load import PacedLoad
from tests.integration.traffic import (
    SERVICE_PORT,
    app_pid,
    kill,
    service_yaml,
    start_members,
)

# Serial: its figures (rates, zero failures, "within 1 s") are about time, measured
# with the machine to itself (make test runs the rest concurrently first).
pytestmark = [pytest.mark.integration, pytest.mark.serial]

URL = f"http://web:{SERVICE_PORT}/"
RATE = 200.0
LABELS = [{"version": "v1"}, {"version": "v1"}, {"version": "v2"}]

SHORT_TTL = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {certificateTTL: 6s}
"""

RETRY = "retry: {attempts: 2, backoff: 5ms}"

OUTLIER = """
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: {service}}}
spec:
  service: {service}
  outlierDetection:
    consecutiveGatewayErrors: 3
    interval: 1s
    baseEjectionTime: 30s
    maxEjectionPercent: 50
---
"""


def route_to_all() -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: {SERVICE_PORT}}}]
  rules:
  - backendRefs: [{{name: web}}]
    {RETRY}
"""


def split(v1: int, v2: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: {SERVICE_PORT}}}]
  rules:
  - backendRefs:
    - {{name: web-v1, weight: {v1}}}
    - {{name: web-v2, weight: {v2}}}
    {RETRY}
"""


@dataclass
class World:
    mesh: Mesh
    members: list[Member]  # the instances serving now (the rolling restart replaces them)
    client: Sidecar

    def workloads(self, version: str | None = None) -> set[str]:
        return {
            m.workload
            for m, labels in zip(self.members, LABELS, strict=True)
            if version is None or labels["version"] == version
        }

    def sidecars(self) -> list[Sidecar]:
        return [self.client, *(m.sidecar for m in self.members)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(tmp_path_factory.mktemp("chaos"))
    mesh.cp.start()
    try:
        mesh.cp.apply(
            service_yaml("web", {"app": "web"})
            + service_yaml("web-v1", {"app": "web", "version": "v1"})
            + service_yaml("web-v2", {"app": "web", "version": "v2"})
            + "".join(OUTLIER.format(service=s) for s in ("web", "web-v1", "web-v2"))
            + route_to_all()
        )
        members = start_members(mesh, "web", LABELS)
        client = client_sidecar(mesh)
        world = World(mesh, members, client)
        with client.client() as c:
            wait_for(
                lambda: {c.get(URL).json()["name"] for _ in range(30)} == world.workloads(),
                20,
                "all three instances answering",
            )
        yield world
    finally:
        mesh.close()


def recent_names(load: PacedLoad, after: float, n: int = 40) -> set[str] | None:
    """The workloads that answered the last `n` calls sent after `after` (None: fewer)."""
    recent = load.since(after)[-n:]
    if len(recent) < n:
        return None
    return {o.name for o in recent}


def wait_serving(load: PacedLoad, workloads: set[str], after: float, what: str) -> None:
    """Until the last 40 calls sent after `after` were all answered by `workloads` (and
    by each of them when there are several)."""
    wait_for(lambda: recent_names(load, after) == workloads, 20, what)


def assert_no_failures(load: PacedLoad, phase: str, minimum: int) -> None:
    """Not one failure, over at least `minimum` calls (a loaded machine sends fewer than
    the rate asks: the report counts the slots skipped)."""
    calls = len(load.outcomes)
    assert calls >= minimum, f"{phase}: only {calls} calls\n{load.report()}"
    assert not load.failures(), f"{phase}:\n{load.report()}"


# -- a route change -------------------------------------------------------------------------


def test_weights_moved_under_load_fail_nothing(world: World) -> None:
    v1, v2 = world.workloads("v1"), world.workloads("v2")
    with world.client.client() as c, PacedLoad(c, URL, RATE) as load:
        wait_for(lambda: len(load.outcomes) > 100, 10, "load before the change")
        for (w1, w2), expected in (((0, 100), v2), ((100, 0), v1), ((50, 50), v1 | v2)):
            changed = time.monotonic()
            world.mesh.cp.apply(split(w1, w2))
            wait_serving(load, expected, changed, f"the split {w1}/{w2} in force")
        changed = time.monotonic()
        world.mesh.cp.apply(route_to_all())
        wait_serving(load, v1 | v2, changed, "the route to every instance back")
    assert_no_failures(load, "route change", 200)


# -- the control plane restarts -------------------------------------------------------------


def connected(sidecar: Sidecar) -> bool:
    return bool(sidecar.config_dump()["connected"])


def test_a_control_plane_restart_under_load_fails_nothing(world: World) -> None:
    with world.client.client() as c, PacedLoad(c, URL, RATE) as load:
        wait_for(lambda: len(load.outcomes) > 100, 10, "load before the restart")
        world.mesh.cp.stop()  # SIGTERM, then the same ports and data dir
        world.mesh.cp.start()
        for sidecar in world.sidecars():
            wait_for(partial(connected, sidecar), 30, f"{sidecar.admin} to reconnect")
        # The restarted control plane is in charge: a change made now reaches the client.
        changed = time.monotonic()
        world.mesh.cp.apply(split(0, 100))
        wait_serving(load, world.workloads("v2"), changed, "a route change after the restart")
        changed = time.monotonic()
        world.mesh.cp.apply(route_to_all())
        wait_serving(load, world.workloads(), changed, "the route to every instance back")
    assert_no_failures(load, "control-plane restart", 200)


# -- a rolling restart ----------------------------------------------------------------------


def endpoint_names(world: World) -> set[str]:
    return {e["workload"] for e in world.mesh.cp.endpoints("web")}


def test_a_rolling_restart_of_every_instance_fails_nothing(world: World) -> None:
    # From here on, certificates live 6 s (for the rotation phase): the instances started
    # now get such certificates. Not before the control-plane restart: see the module doc.
    world.mesh.cp.apply(SHORT_TTL)
    old = list(world.members)
    with world.client.client() as c, PacedLoad(c, URL, RATE) as load:
        wait_for(lambda: len(load.outcomes) > 100, 10, "load before the restart")
        new = start_members(world.mesh, "web", LABELS)  # surge: the new ones first
        everyone = {m.workload for m in old + new}
        wait_for(lambda: endpoint_names(world) == everyone, 20, "old and new instances")
        for member in old:  # then each old one drains and stops, one at a time
            member.proc.signal(signal.SIGTERM)
            assert member.proc.wait(30) == 0, "\n".join(member.proc.stderr_lines[-20:])
            gone = partial(lambda w: w not in endpoint_names(world), member.workload)
            wait_for(gone, 10, f"{member.workload} out of the endpoints")
        world.members = new
        changed = time.monotonic()
        wait_serving(load, world.workloads(), changed, "the new instances serving")
    assert_no_failures(load, "rolling restart", 200)
    for member in old:
        log = "\n".join(member.proc.stderr_lines)
        assert "still in flight after the drain deadline" not in log, log[-2000:]


# -- certificates rotate --------------------------------------------------------------------


def renewals(sidecar: Sidecar) -> int:
    return int(sidecar.admin_get("/stats").json()["identity"]["renewals"])


def test_certificate_rotation_under_load_fails_nothing(world: World) -> None:
    # A client sidecar of its own, with a 6 s certificate like the instances started by
    # the rolling restart (the module's client has the default 24 h one).
    client = client_sidecar(world.mesh, "rotating-client")
    sidecars = [client, *(m.sidecar for m in world.members)]
    before = {s.admin: renewals(s) for s in sidecars}
    with client.client() as c, PacedLoad(c, URL, RATE) as load:
        # A 6 s TTL: each renews at half life, every 3 s; wait for each to renew twice.
        wait_for(
            lambda: all(renewals(s) >= before[s.admin] + 2 for s in sidecars),
            25,
            "two renewals of every sidecar's certificate",
            interval=0.25,
        )
    assert_no_failures(load, "certificate rotation", 200)


# -- an instance is SIGKILLed ---------------------------------------------------------------


def test_one_of_three_instances_sigkilled_under_load(world: World) -> None:
    doomed = world.members[0]
    survivors = {m.workload for m in world.members[1:]}
    app = app_pid(doomed)
    with world.client.client() as c, PacedLoad(c, URL, RATE) as load:
        wait_for(lambda: load.count(lambda o: o.name == doomed.workload) > 30, 10, "load")
        doomed.proc.signal(signal.SIGKILL)  # the sidecar and the app die at once
        kill(app, signal.SIGKILL)
        killed = time.monotonic()
        # Until its lease expires and EDS drops it (a connect failure each time it is
        # chosen meanwhile), then a second more.
        wait_for(lambda: endpoint_names(world) == survivors, 20, "the dead instance's lease")
        left = time.monotonic()
        wait_for(
            lambda: load.count(lambda o: o.started > left + 1) > 100 and len(load.outcomes) > 1000,
            20,
            "calls after, and 1,000 in all",
        )
    doomed.proc.wait(5)
    outcomes = list(load.outcomes)
    failed = load.failures()
    assert len(outcomes) >= 1000, load.report()
    assert len(failed) <= len(outcomes) / 1000, load.report(killed)
    after = [o for o in load.since(killed)]
    assert {o.name for o in after if o.status == 200} == survivors
    # The dead instance was chosen and its connect failures retried: the test saw the case.
    clusters = {cl["name"]: cl for cl in world.client.clusters()}
    assert clusters[f"outbound|{SERVICE_PORT}||web.default.svc.mesh"]["connect_failures"] > 0
