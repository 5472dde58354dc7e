"""`trellis check`'s rules as pure functions of the facts it reads (no control plane)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from trellis.cli.check import CHECKS, Facts, certificate_warning, render, run_checks

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def stamp(delta: dt.timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_info(subject: str, left: dt.timedelta) -> dict[str, Any]:
    return {
        "subject": subject,
        "serial": "1",
        "notBefore": stamp(-dt.timedelta(days=100)),
        "notAfter": stamp(left),
        "fingerprint": "f",
    }


def ca(
    signing_left: dt.timedelta = dt.timedelta(days=3000), roots: int = 1, **extra: Any
) -> dict[str, Any]:
    root = cert_info("CN=root", signing_left)
    return {
        "mode": "self-signed",
        "trustDomain": "trellis.local",
        "certificateTTLSeconds": 86400,
        "signing": root,
        "roots": [root]
        + [cert_info(f"CN=old{i}", dt.timedelta(days=3000)) for i in range(1, roots)],
        "rotating": roots > 1,
        "secure": "127.0.0.1:15012",
        **extra,
    }


def svid(
    lifetime: dt.timedelta, left: dt.timedelta, node: str | None = "sidecar~a.default"
) -> dict[str, Any]:
    return {
        "serial": "ab",
        "spiffeId": "spiffe://trellis.local/ns/default/sa/a",
        "namespace": "default",
        "serviceAccount": "a",
        "tokenId": "t1",
        "notBefore": stamp(left - lifetime),
        "notAfter": stamp(left),
        "node": node,
    }


def statuses(facts: Facts) -> dict[str, str]:
    return {check.description: outcome.status for check, outcome in run_checks(facts)}


def test_workload_certificate_thresholds() -> None:
    day = dt.timedelta(hours=24)
    # 24 h: 20% is 4.8 h.
    assert not certificate_warning(NOW - 12 * H, NOW + 12 * H, NOW)
    assert certificate_warning(NOW - 20 * H, NOW + 4 * H, NOW)
    assert not certificate_warning(NOW - day + 5 * H, NOW + 5 * H, NOW)
    # 3 h: the one-hour floor is above 20% (36 min).
    assert certificate_warning(NOW - 2.5 * H, NOW + 0.5 * H, NOW)
    assert not certificate_warning(NOW - 1.5 * H, NOW + 1.5 * H, NOW)
    # 10 s (a test mesh): only the 20% rule.
    ten = dt.timedelta(seconds=10)
    assert not certificate_warning(NOW - ten / 2, NOW + ten / 2, NOW)
    assert certificate_warning(
        NOW - ten + dt.timedelta(seconds=1), NOW + dt.timedelta(seconds=1), NOW
    )


def test_a_healthy_mesh_passes_every_check() -> None:
    facts = Facts(NOW, True, ca(), [svid(24 * H, 12 * H)])
    assert set(statuses(facts).values()) == {"ok"}
    assert render(run_checks(facts))[-1].endswith("\u221a")


def test_warnings_rotation_ca_expiry_and_failing_renewals() -> None:
    facts = Facts(NOW, True, ca(dt.timedelta(days=30), roots=2), [svid(24 * H, 2 * H)])
    results = statuses(facts)
    assert results == {
        "the control plane API is reachable": "ok",
        "the mesh CA is running": "ok",
        "the CA signing certificate is valid for more than 90 days": "warn",
        "every trusted root is valid for more than 90 days": "warn",
        "no root rotation is left unfinished": "warn",
        "no workload certificate is close to expiry": "warn",
        "no proxyless workload is asked to be PERMISSIVE": "ok",
    }
    lines = render(run_checks(facts))
    assert any("serial ab (sidecar~a.default)" in line for line in lines)
    assert sum(line.strip().startswith("hint:") for line in lines) == 4
    assert lines[-1].endswith("\u221a")  # warnings do not fail


def test_an_expired_ca_fails_and_an_unreachable_api_skips_the_rest() -> None:
    expired = statuses(Facts(NOW, True, ca(-H), []))
    assert expired["the CA signing certificate is valid for more than 90 days"] == "fail"
    down = run_checks(Facts(NOW, False, problems={"api": "cannot reach"}))
    assert [o.status for _, o in down] == ["fail"] + ["skip"] * (len(CHECKS) - 1)
    assert render(down)[-1].endswith("\u00d7")


def test_a_proxyless_workload_asked_to_be_permissive_is_a_warning() -> None:
    def service(name: str, mode: str | None) -> dict[str, object]:
        spec: dict[str, object] = {"selector": {"app": name}}
        if mode:
            spec["mtls"] = {"mode": mode}
        return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}

    def workload(name: str, app: str, proxyless: bool) -> dict[str, object]:
        spec = {"proxyless": True} if proxyless else {"inbound": {"port": 15006}}
        return {"metadata": {"name": name, "labels": {"app": app}}, "spec": spec}

    services = [service("grpc", "PERMISSIVE"), service("web", None)]
    workloads = [workload("grpc-1", "grpc", True), workload("web-1", "web", False)]
    facts = Facts(NOW, True, ca(), [], None, services, workloads)
    (outcome,) = [o for c, o in run_checks(facts) if "PERMISSIVE" in c.description]
    assert outcome.status == "warn" and outcome.details == (
        "default/grpc-1: asked PERMISSIVE, serves STRICT (plaintext callers are refused)",
    )
    mesh = {"spec": {"mtls": {"mode": "PERMISSIVE"}}}
    everything = Facts(NOW, True, ca(), [], mesh, [service("web", None)],
                       [workload("web-2", "web", True)])  # fmt: skip
    (outcome,) = [o for c, o in run_checks(everything) if "PERMISSIVE" in c.description]
    assert outcome.status == "warn"
    fine = Facts(NOW, True, ca(), [], None, [service("web", None)], workloads)
    assert all(o.status != "warn" for c, o in run_checks(fine) if "PERMISSIVE" in c.description)
