"""One generator per node kind (DESIGN §2), as Istio keeps one for proxyless gRPC.

`GENERATORS[node.kind].generate(node, push, type_url, names)`; `gateway` reuses
the sidecar generator until gateways get their own.
"""

from __future__ import annotations

from trellis.control.translate.api import Generator
from trellis.control.translate.generators import proxyless, sidecar
from trellis.control.translate.node import NodeKind

GENERATORS: dict[NodeKind, Generator] = {
    "proxyless": proxyless.GENERATOR,
    "sidecar": sidecar.GENERATOR,
    "gateway": sidecar.GENERATOR,
}

__all__ = ["GENERATORS"]
