"""`trellis check`: a list of declarative checks of the mesh's identity health, each with a hint.

Facts are read once from the REST API (`/healthz`, `/api/v1/ca`,
`/api/v1/identities`); every check is a pure function of them and the clock,
so the rules are tested without a control plane. A check passes, warns or
fails (linkerd's marks); a check whose facts could not be read is skipped. The command
exits 1 when any check fails (warnings do not fail it).

Rules:
- the CA's signing certificate and every trusted root: fail when expired, warn
  when they have less than 90 days left;
- a root rotation left unfinished (more than one trusted root): warn;
- a workload certificate (the current one of each proxy): warn when it has less
  than 20% of its lifetime left, or less than an hour for lifetimes over two
  hours (proxies renew at half life, so either means renewal is failing); shorter
  lifetimes only get the 20% rule, or every certificate of a test mesh with a 10 s
  TTL would warn;
- a proxyless workload that PERMISSIVE mTLS would cover (the MeshConfig, or a
  Service selecting it): warn, because grpcio servers cannot be PERMISSIVE (they
  match only one transport per listener) and the control plane gives them STRICT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import typer

from trellis.cli.client import ApiError, CliError, connect
from trellis.cli.options import Server

Status = Literal["ok", "warn", "fail", "skip"]
CA_WARNING = dt.timedelta(days=90)
CERT_FRACTION = 0.2
CERT_FLOOR = dt.timedelta(hours=1)
CERT_FLOOR_MIN_LIFETIME = dt.timedelta(hours=2)

ROTATE_HINT = (
    "self-signed CA: `trellis ca rotate`, then `trellis ca rotate --finish` once every workload "
    "has renewed; intermediate CA: restart `trellis control` with a new --ca-cert/--ca-key"
)


@dataclass(frozen=True, slots=True)
class Facts:
    now: dt.datetime
    healthy: bool = False
    ca: dict[str, Any] | None = None
    certificates: list[dict[str, Any]] | None = None
    mesh: dict[str, Any] | None = None  # the MeshConfig document (None: the defaults)
    services: list[dict[str, Any]] | None = None
    workloads: list[dict[str, Any]] | None = None
    problems: dict[str, str] = field(default_factory=dict)  # what could not be read, and why


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    description: str
    hint: str
    run: Callable[[Facts], Outcome]


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _left(not_after: str, now: dt.datetime) -> str:
    seconds = (_time(not_after) - now).total_seconds()
    if seconds < 0:
        return "expired"
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} days left"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h left"
    return f"{seconds:.0f}s left"


def certificate_warning(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> bool:
    """True when a workload certificate is close enough to expiry to mean renewal is failing."""
    lifetime = not_after - not_before
    threshold = lifetime * CERT_FRACTION
    if lifetime > CERT_FLOOR_MIN_LIFETIME:
        threshold = max(threshold, CERT_FLOOR)
    return not_after - now < threshold


# -- the checks -------------------------------------------------------------------------------


def _api(facts: Facts) -> Outcome:
    if facts.healthy:
        return Outcome("ok")
    return Outcome("fail", (facts.problems.get("api", "no answer"),))


def _ca_running(facts: Facts) -> Outcome:
    if not facts.healthy:
        return Outcome("skip")
    if facts.ca is None:
        return Outcome("fail", (facts.problems.get("ca", "no answer"),))
    return Outcome("ok", (f"{facts.ca['mode']} CA, trust domain {facts.ca['trustDomain']}",))


def _ca_certificates(
    facts: Facts, certs: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> Outcome:
    if facts.ca is None:
        return Outcome("skip")
    status: Status = "ok"
    details = []
    for cert in certs(facts.ca):
        left = _time(cert["notAfter"]) - facts.now
        if left <= dt.timedelta(0):
            status = "fail"
            details.append(f"{cert['subject']} expired at {cert['notAfter']}")
        elif left < CA_WARNING:
            status = "fail" if status == "fail" else "warn"
            details.append(f"{cert['subject']}: {_left(cert['notAfter'], facts.now)}")
    return Outcome(status, tuple(details))


def _signing(facts: Facts) -> Outcome:
    return _ca_certificates(facts, lambda ca: [ca["signing"]])


def _roots(facts: Facts) -> Outcome:
    return _ca_certificates(facts, lambda ca: list(ca["roots"]))


def _rotation(facts: Facts) -> Outcome:
    if facts.ca is None:
        return Outcome("skip")
    if not facts.ca["rotating"]:
        return Outcome("ok")
    old = ", ".join(r["subject"] for r in facts.ca["roots"][1:])
    return Outcome("warn", (f"still trusted besides the current root: {old}",))


def _workload_certificates(facts: Facts) -> Outcome:
    if facts.certificates is None:
        return Outcome("skip") if facts.ca is None else Outcome("fail", ("no answer",))
    details = []
    for cert in facts.certificates:
        if certificate_warning(_time(cert["notBefore"]), _time(cert["notAfter"]), facts.now):
            holder = cert.get("node") or f"token {cert['tokenId']}"
            details.append(
                f"{cert['spiffeId']} serial {cert['serial']} ({holder}): "
                f"{_left(cert['notAfter'], facts.now)}"
            )
    summary = f"{len(facts.certificates)} current certificate(s)"
    return Outcome("warn" if details else "ok", (summary, *details) if details else (summary,))


def _selects(service: dict[str, Any], workload: dict[str, Any]) -> bool:
    meta, labels = workload.get("metadata", {}), workload.get("metadata", {}).get("labels", {})
    selector = service.get("spec", {}).get("selector") or {}
    same_namespace = service.get("metadata", {}).get("namespace", "default") == meta.get(
        "namespace", "default"
    )
    return (
        bool(selector) and same_namespace and all(labels.get(k) == v for k, v in selector.items())
    )


def _proxyless_permissive(facts: Facts) -> Outcome:
    if not facts.healthy or "resources" in facts.problems:
        return Outcome("skip")
    mesh_mode = ((facts.mesh or {}).get("spec", {}).get("mtls") or {}).get("mode", "STRICT")
    details = []
    for w in facts.workloads or ():
        if not w.get("spec", {}).get("proxyless"):
            continue
        modes = {
            (s.get("spec", {}).get("mtls") or {}).get("mode")
            for s in facts.services or ()
            if _selects(s, w)
        } - {None}
        if "PERMISSIVE" in modes or (not modes and mesh_mode == "PERMISSIVE"):
            meta = w.get("metadata", {})
            details.append(
                f"{meta.get('namespace', 'default')}/{meta.get('name')}: asked PERMISSIVE, "
                "serves STRICT (plaintext callers are refused)"
            )
    return Outcome("warn" if details else "ok", tuple(details))


CHECKS: tuple[Check, ...] = (
    Check(
        "the control plane API is reachable",
        "start `trellis control`, or point --server / TRELLIS_SERVER at it",
        _api,
    ),
    Check("the mesh CA is running", "the control plane runs the CA: check its log", _ca_running),
    Check(
        "the CA signing certificate is valid for more than 90 days",
        ROTATE_HINT,
        _signing,
    ),
    Check("every trusted root is valid for more than 90 days", ROTATE_HINT, _roots),
    Check(
        "no root rotation is left unfinished",
        "once every workload has renewed (one certificate TTL after `trellis ca rotate`), run "
        "`trellis ca rotate --finish`",
        _rotation,
    ),
    Check(
        "no workload certificate is close to expiry",
        "proxies renew at half life: look at the proxy's log; a revoked join token stops "
        "renewal (`trellis token list`), and the proxy must join again with a new token",
        _workload_certificates,
    ),
    Check(
        "no proxyless workload is asked to be PERMISSIVE",
        "grpcio servers cannot take plaintext and mTLS on one port: they run STRICT; give their "
        "callers mesh identities (`trellis run`), or run the app with a sidecar instead",
        _proxyless_permissive,
    ),
)

# linkerd's marks: check, double exclamation, multiplication sign.
SYMBOLS: dict[Status, str] = {"ok": "\u221a", "warn": "\u203c", "fail": "\u00d7", "skip": "-"}


def run_checks(facts: Facts, checks: tuple[Check, ...] = CHECKS) -> list[tuple[Check, Outcome]]:
    return [(check, check.run(facts)) for check in checks]


def render(results: list[tuple[Check, Outcome]]) -> list[str]:
    lines = []
    for check, outcome in results:
        suffix = " (skipped)" if outcome.status == "skip" else ""
        lines.append(f"{SYMBOLS[outcome.status]} {check.description}{suffix}")
        lines.extend(f"    {detail}" for detail in outcome.details)
        if outcome.status in ("warn", "fail"):
            lines.append(f"    hint: {check.hint}")
    failed = any(o.status == "fail" for _, o in results)
    lines.append(f"\nStatus check results are {SYMBOLS['fail' if failed else 'ok']}")
    return lines


def gather(server: str | None, now: dt.datetime) -> Facts:
    problems: dict[str, str] = {}
    client = connect(server)
    try:
        healthy = False
        try:
            healthy = client.request("GET", "/healthz").get("status") == "ok"
        except (CliError, ApiError) as e:
            problems["api"] = e.message
        ca = certificates = mesh = services = workloads = None
        if healthy:
            try:
                ca = client.request("GET", "/api/v1/ca")
                certificates = client.request("GET", "/api/v1/identities")["items"]
            except (CliError, ApiError) as e:
                problems["ca"] = e.message
            try:
                meshes = client.request("GET", "/api/v1/meshconfigs")["items"]
                mesh = meshes[0] if meshes else None
                services = client.request("GET", "/api/v1/services")["items"]
                workloads = client.request("GET", "/api/v1/workloads")["items"]
            except (CliError, ApiError) as e:
                problems["resources"] = e.message
        return Facts(now, healthy, ca, certificates, mesh, services, workloads, problems)
    finally:
        client.close()


def check(
    server: Server = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="details of passing checks")
    ] = False,
) -> None:
    """Check the mesh's identity health: CA and root expiry, rotation, workload certificates."""
    results = run_checks(gather(server, dt.datetime.now(dt.UTC)))
    if not verbose:
        results = [(c, o if o.status != "ok" else Outcome("ok")) for c, o in results]
    for line in render(results):
        typer.echo(line)
    if any(o.status == "fail" for _, o in results):
        raise typer.Exit(1)
