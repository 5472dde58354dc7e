"""Resilience through real sidecars: retries mask a backend failing half its requests, a
request timeout gives 504 (flag UT), fault injection hits its percentages, routes keep
working while the control plane is down and converge after it restarts, and a workload
SIGKILLed under load costs clients nothing that the retry policy can reach.

The backends are the demo web app under `trellis run` (its `fail=odd`, `delay=S` knobs);
the client is the test, through a standalone `trellis proxy`.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from functools import partial

import httpx
import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import (
    FLAGS,
    SERVICE_PORT,
    Load,
    app_pid,
    kill,
    names,
    service_yaml,
    start_members,
    statuses,
    versioned,
)

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"


def one_member(mesh: Mesh, route: str) -> Member:
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + route)
    return run_service(mesh, "web")


# -- retries --------------------------------------------------------------------------------

RETRY_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retried}}]
    backendRefs: [{name: web}]
    retry: {codes: [503], attempts: 2, backoff: 5ms}
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web}]
"""


def test_retries_mask_a_backend_failing_every_other_request(mesh: Mesh) -> None:
    one_member(mesh, RETRY_ROUTE)
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        # Without a retry policy, the app's every other 503 reaches the client.
        plain = statuses(c, URL + "/plain?fail=odd", 200)
        assert plain == {200: 100, 503: 100}, plain
        # The same app behind a rule that retries 503: every call succeeds, each
        # after one retry at most (the app alternates, so it answered 200 times). A
        # retry per call is within the default retry budget for 100 calls (20% of the
        # 300 requests plus 10/s over 10 s: tests/integration/test_retry_budget.py).
        retried = [c.get(URL + "/retried?fail=odd") for _ in range(100)]
    assert Counter(r.status_code for r in retried) == {200: 100}
    counts = [r.json()["count"] for r in retried]
    assert all(n % 2 == 0 for n in counts), "a 503 answered by the app reached the client"
    assert counts[-1] - counts[0] == 2 * 99, "each call should cost one failed try and a retry"


# -- timeouts -------------------------------------------------------------------------------

TIMEOUT_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - backendRefs: [{name: web}]
    timeouts: {request: 500ms}
"""


def in_flight(sidecar: Sidecar) -> int:
    return int(sidecar.admin_get("/stats").json()["in_flight"])


def test_a_request_timeout_gives_504_with_flag_ut(mesh: Mesh) -> None:
    service = one_member(mesh, TIMEOUT_ROUTE).sidecar
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        assert c.get(URL + "/?delay=0.1").status_code == 200  # under the timeout: served
        for _ in range(3):
            started = time.monotonic()
            r = c.get(URL + "/?delay=3")
            elapsed = time.monotonic() - started
            assert r.status_code == 504, r.text
            assert "UT" in r.headers[FLAGS].split(","), r.headers
            # The route's 0.5 s, not the app's 3 s (with room for a slow machine).
            assert 0.45 <= elapsed < 2.5, f"the 504 came after {elapsed:.2f}s, not 0.5s"
            # The abandoned request ends at the service's sidecar too, long before the app
            # would have answered (3 s).
            wait_for(lambda: in_flight(service) == 0, 2.0, "the service sidecar to let go")
        # The connection is still good for the next request.
        assert c.get(URL + "/").status_code == 200


def test_a_client_that_gives_up_drops_the_request_in_both_sidecars(mesh: Mesh) -> None:
    """No timeout configured: only the client's closing can end the request early."""
    service = one_member(mesh, "").sidecar
    sidecar = client_sidecar(mesh)
    with sidecar.client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        c.get(URL + "/?delay=3")
    # Within 2 s, long before the app would have answered (3 s).
    wait_for(lambda: in_flight(sidecar) == 0, 2.0, "the client sidecar to drop the request")
    wait_for(lambda: in_flight(service) == 0, 2.0, "the service sidecar to drop it too")


# -- fault injection ------------------------------------------------------------------------

FAULT_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /abort}}]
    backendRefs: [{name: web}]
    fault: {abort: {httpStatus: 503, percent: 30}}
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: web}]
    fault: {delay: {fixedDelay: 300ms, percent: 100}}
  - matches: [{path: {type: PathPrefix, value: /sometimes-slow}}]
    backendRefs: [{name: web}]
    fault: {delay: {fixedDelay: 20ms, percent: 25}}
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web}]
"""


def test_fault_injection_hits_its_percentages(mesh: Mesh) -> None:
    one_member(mesh, FAULT_ROUTE)
    sidecar = client_sidecar(mesh)
    calls = 2000
    with sidecar.client() as c:
        # Abort 503 at 30%: within 5 points over 2000 calls (4.9 standard deviations: a
        # false failure in a million runs);
        # every abort is flagged FI, and the app never saw it.
        aborts = served = 0
        for _ in range(calls):
            r = c.get(URL + "/abort")
            if r.status_code == 503:
                assert r.headers[FLAGS] == "FI", r.headers
                aborts += 1
            else:
                assert r.status_code == 200 and FLAGS not in r.headers
                served = r.json()["count"]
        assert abs(100 * aborts / calls - 30) <= 5, f"{aborts} aborts in {calls} calls"
        assert served == calls - aborts, "the app received aborted requests"

        # A delay at 100%: every call takes at least the delay and says DI.
        for _ in range(3):
            started = time.monotonic()
            r = c.get(URL + "/slow")
            assert time.monotonic() - started >= 0.3
            assert r.status_code == 200 and r.headers[FLAGS] == "DI"
        durations = []
        for _ in range(5):  # the best of five: one scheduling stall must not fail it
            started = time.monotonic()
            assert FLAGS not in c.get(URL + "/fast").headers
            durations.append(time.monotonic() - started)
        assert min(durations) < 0.3, durations

        # A delay at 25%: the flagged calls are the slow ones, about a quarter of them.
        # 800 calls: 8 points are 5.2 standard deviations.
        delayed = 0
        for _ in range(800):
            started = time.monotonic()
            r = c.get(URL + "/sometimes-slow")
            if r.headers.get(FLAGS) == "DI":
                assert time.monotonic() - started >= 0.02
                delayed += 1
        assert abs(100 * delayed / 800 - 25) <= 8, f"{delayed} of 800 calls delayed"


# -- the control plane goes away ------------------------------------------------------------


def split(v1: int, v2: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: 9080}}]
  rules:
  - backendRefs:
    - {{name: web-v1, weight: {v1}}}
    - {{name: web-v2, weight: {v2}}}
"""


def test_routes_survive_a_control_plane_kill_and_converge_after_restart(mesh: Mesh) -> None:
    members = versioned(mesh, "web", ["v1", "v2"])
    v1, v2 = members["v1"].workload, members["v2"].workload
    mesh.cp.apply(split(100, 0))
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        assert names(c, URL + "/", 10) == {v1: 10}
        with Load(c, URL + "/") as load:
            wait_for(lambda: len(load.outcomes) > 20, 10, "load before the kill")
            mesh.cp.kill()
            killed, seen = time.monotonic(), len(load.outcomes)
            wait_for(
                lambda: len(load.outcomes) > seen + 100 and time.monotonic() > killed + 1.5,
                20,
                "calls while the control plane is down",
            )
            during = load.outcomes[seen:]
            mesh.cp.start()  # same ports, same data dir
        assert load.failures() == [], load.failures()[:5]
        assert {o.name for o in during} == {v1}

        # Nothing changed while it was away: calls still go where they went.
        assert names(c, URL + "/", 20) == {v1: 20}
        # The sidecars reconnect; a route change made after the restart reaches them.
        mesh.cp.apply(split(0, 100))
        wait_for(lambda: names(c, URL + "/", 5) == {v2: 5}, 30, "the new route after restart")
        assert names(c, URL + "/", 50) == {v2: 50}
    # Every sidecar reconnects (each on its own jittered backoff).
    for proxy in (sidecar, members["v1"].sidecar, members["v2"].sidecar):
        wait_for(partial(connected, proxy), 30, f"{proxy.admin} to reconnect")


def connected(sidecar: Sidecar) -> bool:
    return bool(sidecar.config_dump()["connected"])


# -- a workload dies ------------------------------------------------------------------------

RESET_RETRY_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - backendRefs: [{name: web}]
    retry: {attempts: 2, backoff: 5ms}
"""


def test_a_sigkilled_workload_costs_clients_nothing_retries_can_reach(mesh: Mesh) -> None:
    # retry with no codes: the sidecar retries connect-failure and reset (see
    # control/translate/generators/sidecar.py).
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + RESET_RETRY_ROUTE)
    doomed, survivor = start_members(mesh, "web", [{"n": "a"}, {"n": "b"}], ttl=3)
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        wait_for(lambda: len(names(c, URL + "/", 20)) == 2, 10, "both endpoints taking requests")
        app = app_pid(doomed)
        # Four callers and a 20 ms answer: calls are in flight on the doomed endpoint when
        # it dies (resets), and later ones find it gone (connect failures).
        with Load(c, URL + "/?delay=0.02", workers=4) as load:
            wait_for(lambda: load.count(lambda o: o.name == doomed.workload) > 20, 10, "load")
            doomed.proc.signal(signal.SIGKILL)  # the sidecar and the app die at once
            kill(app, signal.SIGKILL)
            killed, seen = time.monotonic(), len(load.outcomes)
            # Keep calling until the lease expired and the endpoint left EDS, and beyond.
            wait_for(
                lambda: [e["workload"] for e in mesh.cp.endpoints("web")] == [survivor.workload],
                20,
                "the dead workload's lease to expire",
            )
            left = time.monotonic()
            wait_for(lambda: load.count(lambda o: o.t > left) > 50, 10, "calls after it left")
        doomed.proc.wait(5)
    assert load.failures() == [], load.failures()[:5]
    # Calls sent after the kill (one answered just before it may be recorded after it).
    after = [o for o in load.outcomes[seen:] if o.started > killed]
    assert len(after) > 100, len(after)
    assert {o.name for o in after} == {survivor.workload}
    # The retries did the work: the client sidecar saw connect failures to the dead host.
    stats = {c["name"]: c for c in sidecar.clusters()}
    failures = stats["outbound|9080||web.default.svc.mesh"]["connect_failures"]
    assert failures > 0, "no call reached the dead endpoint: the test proved nothing"
    assert time.monotonic() - killed < 30


def test_retries_send_again_only_what_is_idempotent(mesh: Mesh) -> None:
    """A retried request may have been acted on: POSTs are not sent again (RFC 9110
    §9.2.2), unless they carry an Idempotency-Key; GETs and PUTs are."""
    one_member(mesh, RETRY_ROUTE)
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        url = URL + "/retried?fail=odd"
        gets = [c.get(url) for _ in range(20)]
        posts = [c.post(url, content=b"pay 1") for _ in range(20)]
        puts = [c.put(url, content=b"set 1") for _ in range(20)]
        keyed = [
            c.post(url, content=b"pay 2", headers={"idempotency-key": f"k{i}"}) for i in range(20)
        ]
    assert Counter(r.status_code for r in gets) == {200: 20}
    assert Counter(r.status_code for r in puts) == {200: 20}
    assert Counter(r.status_code for r in keyed) == {200: 20}
    # Every other POST meets the app's 503, which reaches the client: the app counted
    # each POST once (consecutive counts), none was sent twice.
    assert Counter(r.status_code for r in posts) == {200: 10, 503: 10}
    assert "URX" not in {r.headers.get(FLAGS, "") for r in posts}
    counts = [r.json()["count"] for r in posts if r.status_code == 200]
    assert [b - a for a, b in itertools.pairwise(counts)] == [2] * 9, counts
