"""`trellis explain --from SERVICE METHOD URL [-H 'k: v']...`: one request's decision trail.

Asks the control plane (`POST /api/v1/explain`, admin token) how the source's sidecar
and each destination's sidecar would take the request on the config they are served,
and prints it top to bottom in the order the request meets it: the source's listener,
path, each route tried and why it matched or not, the route's policies, the split,
each backend's balancing and endpoints, each destination's mTLS, route and RBAC
filters, and what the caller would be answered. `-o json` prints the API's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from trellis.cli import output
from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import OutputFormat, Server

Json = dict[str, Any]


def explain(
    method: Annotated[str, typer.Argument(help="the request's method (GET, POST, ...)")],
    url: Annotated[str, typer.Argument(help="http://HOST[:PORT]/PATH?QUERY, as the app sends it")],
    source: Annotated[
        str,
        typer.Option("--from", help="the calling service (NAME or NAME.NAMESPACE) or a node id"),
    ],
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="'name: value' (repeatable)")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="the source's namespace")
    ] = "default",
    pick: Annotated[
        str | None,
        typer.Option("--pick", help="follow only this backend of a split (service or cluster)"),
    ] = None,
    out: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table (readable) or json")
    ] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Explain how the sidecars would take one request: routes, split, endpoints, policies."""
    with reporting():
        body = {
            "from": source,
            "method": method,
            "url": url,
            "headers": list(header or []),
            "namespace": namespace,
            "pick": pick,
        }
        try:
            trail = connect(server).request("POST", "/api/v1/explain", json=body)
        except ApiError as e:
            if e.status == 422:
                raise CliError(e.message) from None
            raise
        if out is OutputFormat.json:
            typer.echo(output.to_json(trail))
        elif out is OutputFormat.yaml:
            typer.echo(output.to_yaml([trail]), nl=False)
        else:
            for line in render(trail):
                typer.echo(line)


# -- text ---------------------------------------------------------------------------------


def render(trail: Json) -> list[str]:
    """The trail as lines of text, in the order the request takes it."""
    lines: list[str] = []
    say = lines.append
    request = trail["request"]
    say(f"{request['method']} {request['url']}  from {request['from']}")
    for name, value in request.get("headers", {}).items():
        say(f"  {name}: {value}")
    say(f"  (config at store revision {trail['revision']})")
    say("")
    _source(trail["source"], say)
    _outbound(trail["outbound"], say)
    for backend in trail["backends"]:
        _backend(backend, say)
    say("")
    say("Answer")
    for a in trail["answers"]:
        where = f" [{a['endpoint']}]" if a.get("endpoint") else ""
        say(f"  {a['percent']:g}%  {_answer(a)}{where}")
    for note in trail.get("notes", []):
        say(f"  note: {note}")
    return lines


Say = Callable[[str], None]


def _source(node: Json, say: Say) -> None:
    identity = f"identity {node['principal']}" if node.get("principal") else "no mesh identity"
    say(f"Source sidecar {node['node']}  ({_origin(node['from'])}; {identity})")
    for note in node.get("notes", []):
        say(f"  note: {note}")


def _origin(origin: str) -> str:
    return {
        "connected": "connected",
        "workload": "not connected: from its Workload",
        "assumed": "assumed",
    }.get(origin, origin)


def _outbound(step: Json, say: Say) -> None:
    listener = step.get("listener", {})
    if "outsideRegistry" in step:
        say(f"  listener     {listener.get('name')}: {step['outsideRegistry']}")
        say(f"               → {listener.get('default')} (outboundTrafficPolicy)")
    elif listener.get("found"):
        say(f"  listener     {listener['name']} → routes {listener.get('routeConfiguration')}")
    else:
        say(f"  listener     {listener.get('name')}: {listener.get('reason', 'not found')}")
    _path(step.get("path"), say)
    vhost = step.get("virtualHost")
    if vhost is not None:
        say(f"  virtual host {vhost['name']} (host {vhost['host']!r})")
    _routes(step.get("routes"), step.get("untried", 0), say)
    route = step.get("route")
    if route is not None:
        _route(route, say)


def _path(path: Json | None, say: Say) -> None:
    if path is None:
        return
    o = path["options"]
    how = "normalized" if o["normalize"] else "not normalized"
    how += ", slashes merged" if o["mergeSlashes"] else ""
    how += f", escaped slashes {o['escapedSlashes']}"
    if path.get("refused"):
        refused = path["refused"]
        say(f"  path         {path['sent']} refused {refused['status']}: {refused['reason']}")
    elif path.get("normalized") != path["sent"]:
        say(f"  path         {path['sent']} → {path['normalized']}  ({how})")
    else:
        say(f"  path         {path['sent']}  ({how})")


def _routes(routes: list[Json] | None, untried: int, say: Say) -> None:
    if routes is None:
        return
    say("  routes tried in order:")
    for r in routes:
        verdict = "MATCH" if r["matched"] else f"no: {r['reason']}"
        say(f"    #{r['index']} {r['name']}  [{_match(r['match'])}]  {verdict}")
    if untried:
        say(f"    ({untried} later route{'s' if untried > 1 else ''} not tried: first match wins)")


def _match(match: Json) -> str:
    parts = [match["path"], *match["headers"]]
    parts += [f"query {q}" for q in match["queryParameters"]]
    if match["grpc"]:
        parts.append("gRPC")
    return ", ".join(parts)


def _route(route: Json, say: Say) -> None:
    action = route["action"]
    say(f"  route        {route['name']}")
    if action["kind"] == "redirect":
        say(f"    redirect   {action['status']} to {action['location']}")
    elif action["kind"] == "directResponse":
        say(f"    answers    {action['status']} {action.get('body', '')!r}")
    timeout = route.get("timeout")
    say(f"    timeout    {f'{timeout:g}s' if timeout else 'none'}")
    retry = route.get("retry")
    if retry is not None:
        per_try = retry.get("perTryTimeout")
        codes = retry.get("retriableStatusCodes") or []
        say(
            f"    retries    {retry['numRetries']} on {','.join(retry['retryOn'])}"
            + (f" (status {','.join(str(c) for c in codes)})" if codes else "")
            + (f", per try {per_try:g}s" if per_try else "")
            + f", backoff {retry['backoff']['base']:g}s to {retry['backoff']['max']:g}s"
        )
    elif route.get("perTryTimeout"):
        say(f"    per try    {route['perTryTimeout']:g}s (no retries)")
    else:
        say("    retries    none")
    fault = route.get("fault")
    if fault is not None:
        parts = []
        if fault.get("delay") is not None:
            parts.append(f"delay {fault['delay']:g}s for {fault['delayPercent']:g}%")
        if fault.get("abortStatus") is not None or fault.get("abortGrpcStatus") is not None:
            status = fault.get("abortStatus") or f"gRPC {fault.get('abortGrpcStatus')}"
            parts.append(f"abort {status} for {fault['abortPercent']:g}%")
        say(f"    fault      {'; '.join(parts)}")
    for m in route.get("mirrors", []):
        say(f"    mirror     {m['percent']:g}% to {m['cluster']}")
    rewrite = route.get("rewrite")
    if rewrite is not None:
        say(f"    rewrite    {rewrite['from']} → {rewrite['to']}")
    if route.get("hostRewrite"):
        say(f"    host       → {route['hostRewrite']}")
    for kind in ("requestHeaders", "responseHeaders"):
        mutations = route.get(kind)
        if mutations:
            what = "request" if kind == "requestHeaders" else "response"
            adds = ", ".join(f"{a['name']}: {a['value']}" for a in mutations["add"])
            removes = ", ".join(mutations["remove"])
            say(
                f"    {what} headers"
                + (f" add {adds}" if adds else "")
                + (f" remove {removes}" if removes else "")
            )
    if route.get("hashPolicies"):
        keys = ", ".join(f"{h['kind']} {h['name']}".strip() for h in route["hashPolicies"])
        say(f"    hash on    {keys}")
    if action["kind"] == "forward":
        say("  split")
        for c in action["clusters"]:
            say(f"    weight {c['weight']:<5} {c['cluster']}")


def _backend(backend: Json, say: Say) -> None:
    say("")
    followed = "" if backend["followed"] else "  (not followed)"
    say(f"Backend {backend['cluster']}  {backend['percent']:g}% of requests{followed}")
    if not backend["followed"]:
        return
    if backend.get("error"):
        say(f"  cluster      not available: {backend['error']}")
        return
    config = backend.get("config") or {}
    lb = config.get("loadBalancing", {})
    extra = f" ({lb['choiceCount']} choices)" if "choiceCount" in lb else ""
    say(f"  balancing    {lb.get('kind', '?')}{extra}")
    cb = config.get("circuitBreakers", {})
    say(
        f"  limits       {cb.get('maxConnections')} connections, {cb.get('maxRequests')}"
        f" requests, {cb.get('maxPendingRequests')} pending, {cb.get('maxRetries')} retries"
        " (503 UO past them)"
    )
    od = config.get("outlierDetection")
    if od:
        say(
            f"  outliers     eject after {od.get('consecutive5xx')} consecutive 5xx, for"
            f" {od.get('baseEjectionTime'):g}s (at most {od.get('maxEjectionPercent')}%)"
        )
    mtls = config.get("mtls")
    say(
        "  connection   "
        + (f"mTLS, peer must be {', '.join(mtls['peerIdentities'])}" if mtls else "plaintext")
    )
    endpoints = backend.get("endpoints")
    if endpoints is None:
        return
    say(f"  endpoints    {len(endpoints)} healthy in EDS" + (":" if endpoints else ""))
    for e in endpoints:
        where = f"{e['address']}:{e['port']}"
        app = f" app port {e['targetPort']}" if e.get("targetPort") else ""
        locality = f" locality {e['locality']}" if e.get("locality") else ""
        say(f"    {where}  {e.get('workload') or ''}  weight {e['weight']}{app}{locality}")
    for x in backend.get("excluded", []):
        say(f"    left out: {x['workload']}: {x['why']}")
    for e in endpoints:
        destination = e.get("destination")
        if destination is not None:
            _destination(e, destination, say)
    if backend.get("notFollowed"):
        say(f"  ({backend['notFollowed']} more endpoints not followed)")


def _destination(endpoint: Json, d: Json, say: Say) -> None:
    node = d["node"]
    say(f"  → {endpoint.get('workload')}: destination sidecar {node['node']}"
        f" ({_origin(node['from'])})")  # fmt: skip
    listener = d.get("listener", {})
    if not listener.get("found"):
        say(f"      listener {listener.get('name')}: {listener.get('reason')}")
    else:
        connection = "mTLS" if d.get("connection", {}).get("mtls") else "plaintext"
        say(f"      listener {listener['name']} ({listener.get('tls')}), connection {connection}")
    _indented(d.get("path"), _path, say)
    _indented(d.get("routes"), lambda r, s: _routes(r, 0, s), say)
    route = d.get("route")
    if route is not None:
        say(f"      route {route['name']} → app port {route['appPort']}")
    authz = d.get("authorization")
    if authz is not None:
        _authorization(authz, say)
    elif route is not None:
        say("      authorization: no policy selects this workload (all allowed)")
    say(f"      ⇒ {_answer(d['answer'])}")


def _indented(value: Any, show: Callable[[Any, Say], None], say: Say) -> None:
    show(value, lambda line: say("    " + line))


def _authorization(authz: Json, say: Say) -> None:
    r = authz["request"]
    who = r.get("principal") or "no mesh identity"
    say(f"      authorization of {r['method']} {r['path']} to port {r['destinationPort']}"
        f" from {who}:")  # fmt: skip
    for f in authz["filters"]:
        for kind, rules in (("", f.get("rules")), ("dry run ", f.get("dryRun"))):
            if rules is None:
                continue
            ran = "" if f["ran"] else " (did not run: an earlier filter denied)"
            verdict = "allows" if rules["allowed"] else "denies"
            if kind:
                verdict = "would allow" if rules["allowed"] else "would deny"
            say(f"        {kind}{rules['action']} filter {verdict}{ran}")
            if not rules["policies"]:
                say("          (no policy: nothing matches)")
            for p in rules["policies"]:
                mark = "MATCH" if p["matched"] else "no match"
                why = ""
                if p["matched"] and p["matchingRules"]:
                    why = " (rule " + ", ".join(str(m["rule"]) for m in p["matchingRules"]) + ")"
                elif not p["portsMatched"]:
                    why = " (other ports)"
                say(f"          {p['name']}: {mark}{why}")
    if authz.get("dryRunDeniedBy"):
        say(f"        a dry-run policy would deny: {authz['dryRunDeniedBy']}")


def _answer(a: Json) -> str:
    if a["status"] is None:
        return f"reaches the {a['by'].removeprefix('destination ')}: {a['reason']}"
    flags = f" {a['flags']}" if a.get("flags") else ""
    location = f" → {a['location']}" if a.get("location") else ""
    return f"{a['status']}{flags} by the {a['by']}: {a['reason']}{location}"
