"""Printing resources: plain kubectl-style tables (columns per kind in a table), YAML, JSON.

Works on documents as the API returns them (plain dicts), so it needs no model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

Doc = dict[str, Any]


def console() -> Console:
    """stdout; wide when it is not a terminal, so piped tables do not wrap."""
    return Console(width=None if sys.stdout.isatty() else 250, highlight=False, soft_wrap=False)


def _spec(d: Doc) -> Doc:
    spec = d.get("spec")
    return spec if isinstance(spec, dict) else {}


def _labels(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or "<none>"


def _service_ports(d: Doc) -> str:
    return ",".join(
        f"{p.get('port')}/{p.get('protocol', 'http')}" for p in _spec(d).get("ports", [])
    )


def _workload_mode(d: Doc) -> str:
    inbound = _spec(d).get("inbound")
    return f"sidecar:{inbound.get('port')}" if isinstance(inbound, dict) else "proxyless"


def _workload_ports(d: Doc) -> str:
    return ",".join(str(p.get("port")) for p in _spec(d).get("ports", [])) or "<none>"


def _parents(d: Doc) -> str:
    out = []
    for p in _spec(d).get("parentRefs", []):
        name = f"{p['namespace']}/{p['name']}" if p.get("namespace") else p.get("name", "")
        out.append(f"{name}:{p['port']}" if p.get("port") else name)
    return ",".join(out)


def _backends(d: Doc) -> str:
    out = []
    for rule in _spec(d).get("rules", []):
        for b in rule.get("backendRefs", []):
            out.append(f"{b.get('name')}={b.get('weight', 1)}")
    return ",".join(out) or "<none>"


def _count_rules(d: Doc) -> str:
    return str(len(_spec(d).get("rules", [])))


Column = tuple[str, Callable[[Doc], str]]

COLUMNS: dict[str, list[Column]] = {
    "Service": [
        ("PORTS", _service_ports),
        ("SELECTOR", lambda d: _labels(_spec(d).get("selector"))),
    ],
    "Workload": [
        ("ADDRESS", lambda d: str(_spec(d).get("address", ""))),
        ("PORTS", _workload_ports),
        ("MODE", _workload_mode),
        ("LABELS", lambda d: _labels(d.get("metadata", {}).get("labels"))),
    ],
    "HTTPRoute": [("PARENTS", _parents), ("RULES", _count_rules), ("BACKENDS", _backends)],
    "GRPCRoute": [("PARENTS", _parents), ("RULES", _count_rules), ("BACKENDS", _backends)],
    "DestinationPolicy": [
        ("SERVICE", lambda d: str(_spec(d).get("service", ""))),
        ("LOAD BALANCER", lambda d: str(_spec(d).get("loadBalancer", {}).get("type", ""))),
    ],
    "AuthorizationPolicy": [
        ("ACTION", lambda d: str(_spec(d).get("action", ""))),
        ("DRY RUN", lambda d: str(bool(_spec(d).get("dryRun"))).lower()),
        ("RULES", _count_rules),
    ],
    "RateLimitPolicy": [
        ("SERVICE", lambda d: str(_spec(d).get("service", ""))),
        ("SIDE", lambda d: str(_spec(d).get("side", ""))),
        (
            "LIMIT",
            lambda d: (
                f"{_spec(d).get('local', {}).get('requests', '')}"
                f"/{_spec(d).get('local', {}).get('per', '')}"
            ),
        ),
        ("ROUTES", lambda d: str(len(_spec(d).get("routes", [])) or "<service>")),
    ],
    "MeshConfig": [
        ("TRUST DOMAIN", lambda d: str(_spec(d).get("trustDomain", ""))),
        ("MTLS", lambda d: str(_spec(d).get("mtls", {}).get("mode", ""))),
    ],
}


def plain_table(headers: Sequence[str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, overflow="fold")
    return table


def resource_table(kind: str, docs: Sequence[Doc]) -> Table:
    columns = COLUMNS.get(kind, [])
    namespaced = kind != "MeshConfig"
    headers = [*(["NAMESPACE"] if namespaced else []), "NAME", *(h for h, _ in columns), "REVISION"]
    table = plain_table(headers)
    for d in docs:
        meta = d.get("metadata", {})
        cells = [*([meta.get("namespace", "default")] if namespaced else []), meta.get("name", "")]
        cells.extend(fn(d) for _, fn in columns)
        cells.append(str(meta.get("resourceVersion", "")))
        table.add_row(*cells)
    return table


def to_yaml(docs: Sequence[Doc]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2)


def short_key(kind: str, name: str) -> str:
    """`service/reviews`: how apply and delete name what they changed."""
    return f"{kind.lower()}/{name}"
