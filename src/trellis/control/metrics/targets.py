"""Prometheus HTTP service discovery: every proxy's metrics endpoint, as target groups. Pure.

The format is Prometheus's `http_sd_configs` one: a JSON list of
`{"targets": ["HOST:PORT"], "labels": {...}}`. One group per Workload whose sidecar has a
metrics listener (`spec.metrics.port`), at the workload's address. Its labels:
- `namespace`, `workload`, `app`, `version` (the workload's labels, "" when unset),
  `service` (the Services selecting it, comma-separated, sorted), `mtls` ("true"/"false");
- `__metrics_path__` = /metrics and `__scheme__` = http (what to scrape);
- `__meta_trellis_label_<name>` for each workload label (name sanitized to
  `[a-zA-Z0-9_]`), for relabelling rules, dropped after relabelling like any `__meta_`.

The metrics themselves already carry Istio's source_*/destination_* labels; these target
labels say which proxy reported them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from trellis.model import Service, Workload
from trellis.model.base import Document

_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def meta_label(name: str) -> str:
    return "__meta_trellis_label_" + _LABEL_NAME.sub("_", name)


def target_groups(docs: Iterable[Document]) -> list[dict[str, Any]]:
    """Target groups for the Workloads among `docs` that expose metrics, sorted."""
    docs = list(docs)
    services = [d for d in docs if isinstance(d, Service)]
    groups: list[dict[str, Any]] = []
    for w in docs:
        if not isinstance(w, Workload) or w.spec.metrics is None:
            continue
        labels = w.metadata.labels
        selecting = sorted(
            s.name
            for s in services
            if s.namespace == w.namespace
            and s.spec.selector
            and all(labels.get(k) == v for k, v in s.spec.selector.items())
        )
        group_labels = {
            "namespace": w.namespace,
            "workload": w.name,
            "app": labels.get("app", ""),
            "version": labels.get("version", ""),
            "service": ",".join(selecting),
            "mtls": "true" if w.spec.mtls else "false",
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
        }
        for name, value in labels.items():
            group_labels[meta_label(name)] = value
        groups.append(
            {"targets": [_host_port(w.spec.address, w.spec.metrics.port)], "labels": group_labels}
        )
    groups.sort(key=lambda g: (g["labels"]["namespace"], g["labels"]["workload"]))
    return groups
