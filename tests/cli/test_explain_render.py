"""`trellis explain`'s readable form: the trail top to bottom in the order the request takes
it, rendered from a real trail (the pure explain on translated config)."""

from __future__ import annotations

from tests.control.explain.test_explain import DENY_ADMIN, ROUTES, SERVICES, ask
from tests.control.translate.translate_support import load_push

from trellis.cli.explain import render


def positions(lines: list[str], *needles: str) -> list[int]:
    """Where each needle first appears (after the previous one)."""
    out = []
    start = 0
    for needle in needles:
        at = next((i for i in range(start, len(lines)) if needle in lines[i]), None)
        assert at is not None, f"{needle!r} not after line {start}:\n" + "\n".join(lines)
        out.append(at)
        start = at
    return out


def test_the_trail_reads_in_the_order_the_request_takes_it() -> None:
    push = load_push(SERVICES + ROUTES + DENY_ADMIN)
    lines = render(ask(push, "GET", "http://web:9080/admin/x"))
    positions(
        lines,
        "GET http://web:9080/admin/x  from client",
        "Source sidecar sidecar~client.default",
        "listener     web:9080 → routes web.default.svc.mesh:9080",
        "path         /admin/x",
        "#0 default/web-routes/by-header/match-0",
        "no: header x-version exact 'v2': absent",
        "#1 default/web-routes/split/match-0",
        "MATCH",
        "timeout    3s",
        "retries    2 on",
        "weight 70",
        "Backend outbound|9080||web-v1.default.svc.mesh  70% of requests",
        "balancing    least_request (2 choices)",
        "connection   mTLS",
        "10.0.0.1:15006  web-1.default",
        "→ web-1.default: destination sidecar sidecar~web-1.default",
        "authorization of GET /admin/x to port 8001",
        "DENY filter denies",
        "default/deny-admin: MATCH (rule 1)",
        "⇒ 403 RBAC by the destination sidecar",
        "Backend outbound|9080||web-v2.default.svc.mesh  30% of requests",
        "Answer",
        "70%  403 RBAC by the destination sidecar: denied by default/deny-admin [web-1.default]",
    )


def test_a_local_answer_ends_the_trail_early() -> None:
    lines = render(ask(load_push(SERVICES), "GET", "http://web:7777/"))
    assert not any(line.startswith("Backend") for line in lines)
    assert lines[-1].startswith("  100%  404 NR by the source sidecar: service default/web")
