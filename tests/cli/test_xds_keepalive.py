"""xDS keepalive against a real control plane's ping policy, scaled down to seconds.

The control plane runs with `min_ping_interval_ms` = 1.25 s instead of 10 s (the same
policy otherwise: 2 strikes, pings without calls permitted); two sidecar ADS clients
(the proxy's own `AdsClient`) hold a stream to it. One pings at twice the minimum, as
every real client does (tests/control/test_keepalive.py checks the real numbers): its
first stream outlives six pings. The other pings every second, faster than
permitted: the server ends its connection with GOAWAY `too_many_pings`, so the test
can tell that pings really are policed. With gRPC's default policy (5 minutes; what the
control plane had when its option name was misspelt) the compliant client is cut off
at its fifth ping too.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator

import pytest
from tests.cli.control_entry import ENTRY
from tests.cli.control_plane import ControlPlane, control_plane
from tests.proxy.xds.control_plane import RecordingHandler, sidecar_node, wait_for

from trellis.keepalive import ClientKeepalive
from trellis.proxy.xds import LISTENER_TYPE, AdsClient

pytestmark = pytest.mark.integration

MIN_PING_INTERVAL_MS = 1250
COMPLIANT = ClientKeepalive(time_ms=2 * MIN_PING_INTERVAL_MS, timeout_ms=5000)
TOO_FAST = ClientKeepalive(time_ms=1000, timeout_ms=5000)  # gRPC's smallest interval
# The compliant client's stream must outlive this many pings: gRPC's default policy cut
# such a client off at its fifth ping on a quiet stream, measured here.
PINGS = 6


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    command = (sys.executable, ENTRY, "--min-ping-interval-ms", str(MIN_PING_INTERVAL_MS))
    with control_plane(tmp_path_factory.mktemp("keepalive"), command=command) as plane:
        yield plane


def _client(plane: ControlPlane, workload: str, keepalive: ClientKeepalive) -> AdsClient:
    return AdsClient(
        [plane.xds_address], sidecar_node(workload), RecordingHandler(), keepalive=keepalive
    )


async def test_a_client_within_the_policy_keeps_its_stream_and_a_faster_one_is_cut_off(
    scaled: ControlPlane,
) -> None:
    compliant = _client(scaled, "compliant-1", COMPLIANT)
    too_fast = _client(scaled, "too-fast-1", TOO_FAST)
    async with compliant, too_fast:
        for client in (compliant, too_fast):
            client.subscribe(LISTENER_TYPE, ["reviews:9080"])
        await wait_for(lambda: compliant.connected and too_fast.connected, "both streams")
        since = compliant.statistics()["connectedSince"]
        assert since is not None

        # The fast one: GOAWAY too_many_pings after its third strike (about 4 s).
        await wait_for(
            lambda: "Too many pings" in (too_fast.statistics()["lastError"] or ""),
            "the too-fast client's GOAWAY",
            timeout=20,
        )

        # The compliant one: the same first stream, no error, for PINGS pings and a half.
        until = since + (PINGS + 0.5) * COMPLIANT.time_ms / 1000
        while time.time() < until:
            stats = compliant.statistics()
            assert stats["connects"] == 1 and stats["streamErrors"] == 0, stats["lastError"]
            assert stats["connected"], stats["lastError"]
            await asyncio.sleep(0.1)
        stats = compliant.statistics()
        assert (stats["connects"], stats["streamErrors"], stats["lastError"]) == (1, 0, None)
