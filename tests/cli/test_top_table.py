"""`trellis top`'s arithmetic over tap events (pure; the live command is tested in
tests/integration/test_live_traffic.py)."""

from __future__ import annotations

from typing import Any

from trellis.cli.live import TopTable


def event(
    direction: str, source: str, path: str, status: int = 200, ms: float = 2.0
) -> dict[str, Any]:
    return {"type": "event", "direction": direction, "source": source, "destination": "api.ns",
            "method": "GET", "path": path, "status": status, "latency_ms": ms}  # fmt: skip


def test_rows_count_each_request_once_and_rank_the_busiest() -> None:
    table = TopTable(window=10)
    table.started = 0.0
    for i in range(20):
        # Both ends of a meshed call: counted once (the caller's outbound event).
        table.add(event("outbound", "web.ns", "/busy?x=1", 500 if i % 10 == 0 else 200, i), now=5.0)
        table.add(event("inbound", "web.ns", "/busy?x=1"), now=5.0)
    for _ in range(3):
        table.add(event("inbound", "unknown", "/quiet"), now=5.0)  # outside the mesh: counted
    table.add({"type": "start"}, now=5.0)
    rows = table.snapshot(now=10.0)
    assert [r["path"] for r in rows] == ["/busy", "/quiet"]
    busy = rows[0]
    assert busy["count"] == 20 and busy["rps"] == 2.0
    assert busy["success_rate"] == 0.9
    assert busy["p99_ms"] >= busy["p50_ms"]
    # Past the window, rates fall to 0 while counts stay.
    later = table.snapshot(now=30.0)
    assert later[0]["rps"] == 0 and later[0]["success_rate"] is None
    assert {r["count"] for r in later} == {20, 3}
