"""`trellis describe service NAME`: a service's ports, routes, endpoints, subscribed nodes,
and the resilience settings in force (retry budget, circuit breakers, outlier detection)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from trellis.cli import output
from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import Server, resolve_kind


def _lease(endpoint: dict[str, Any], now: float) -> str:
    if endpoint.get("static"):
        return "static"
    expires = endpoint.get("expiresAt")
    if not isinstance(expires, int | float):
        return "-"
    left = expires - now
    return f"expires in {left:.0f}s" if left >= 0 else f"expired {-left:.0f}s ago"


def describe(
    kind: Annotated[str, typer.Argument(help="only `service` for now")],
    name: Annotated[str, typer.Argument()],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON answer")] = False,
    server: Server = None,
) -> None:
    """Describe a service: ports, attached routes, endpoints (with health) and subscribed nodes."""
    with reporting():
        if resolve_kind(kind) != "Service":
            raise CliError("describe supports services only (trellis describe service NAME)")
        client = connect(server)
        try:
            info = client.request(
                "GET", f"/api/v1/describe/services/{name}", params={"namespace": namespace}
            )
        except ApiError as e:
            if e.status == 404:
                raise CliError(f"service/{name} not found in namespace {namespace}") from None
            raise
        if json_out:
            typer.echo(output.to_json(info))
            return
        _print(info)


def _print(info: dict[str, Any]) -> None:
    out = output.console()
    svc = info["service"]
    meta, spec = svc["metadata"], svc["spec"]
    ports = ", ".join(
        f"{p['port']}/{p.get('protocol', 'http')}"
        + (f" ({p['name']})" if p.get("name") else "")
        + (f" -> {p['targetPort']}" if p.get("targetPort") not in (None, p["port"]) else "")
        for p in spec.get("ports", [])
    )
    out.print(f"Service:     {meta['namespace']}/{meta['name']}")
    out.print(f"Ports:       {ports}")
    out.print(f"Selector:    {output._labels(spec.get('selector'))}")
    out.print(f"Revision:    {meta.get('resourceVersion', '-')}")
    out.print("Routes:" + ("" if info["routes"] else "      <none>"))
    for r in info["routes"]:
        rmeta = r["metadata"]
        role = "producer" if rmeta.get("namespace") == meta["namespace"] else "consumer"
        out.print(
            f"  {output.short_key(r['kind'], rmeta['namespace'] + '/' + rmeta['name'])} ({role})"
            f"  parents {output._parents(r)}  backends {output._backends(r)}"
        )
    out.print("Endpoints:" + ("" if info["endpoints"] else "   <none>"))
    if info["endpoints"]:
        now = time.time()
        table = output.plain_table(
            ["WORKLOAD", "ADDRESS", "PORT", "SERVICE PORT", "HEALTHY", "LEASE"]
        )
        for e in info["endpoints"]:
            table.add_row(
                e["workload"],
                e["address"],
                str(e["port"]),
                str(e.get("servicePort", "")),
                "yes" if e["healthy"] else "no",
                _lease(e, now),
            )
        out.print(table)
    out.print("Subscribers:" + ("" if info["subscribers"] else " <none>"))
    for node in info["subscribers"]:
        out.print(f"  {node}")
    policy = info.get("policy")
    if policy:
        for line in policy_lines(policy):
            out.print(line)


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def policy_lines(policy: dict[str, Any]) -> list[str]:
    """The settings in force for calls to the service, one line each."""
    budget = policy["retryBudget"]
    lb = policy["loadBalancer"]
    lines = [
        f"Policy:      {policy.get('destinationPolicy') or '<none> (defaults)'}",
        f"  Retry budget:     {budget['percent']}% of requests"
        f" + {budget['minRetriesPerSecond']}/s, ttl {budget['ttl']}",
        f"  Circuit breakers: {_pairs(policy['circuitBreakers'])}",
        "  Outlier:          "
        + (_pairs(policy["outlierDetection"]) if policy.get("outlierDetection") else "<off>"),
        f"  Load balancer:    {lb['type']}, panic below {lb['healthyPanicThreshold']}% healthy"
        + (", locality failover" if lb.get("localityFailover") else ""),
    ]
    for limit in policy.get("rateLimits", []):
        lines.append(f"  Rate limit:       {limit}")
    return lines
