"""`POST /api/v1/explain`: the decision trail of one request (trellis.control.explain).

Takes `{from, method, url, headers, namespace?, pick?}` and answers the trail as the
control plane's current config would have the sidecars take it. Needs the admin token:
the answer shows policies, endpoints and identities (traffic data is not public). The
connected nodes' own facts are used (their NodeInfo as their streams declared it, the
inbound listener they subscribe to, the SPIFFE ID of the mesh certificate bound to
them). Explaining runs on the event loop and reads no store: it works on the
PushContext being served. trellis.control.explain is imported on first use: it loads
the proxy's listener modules (~70 ms, ~3 MB), which a control plane that never
explains does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from trellis.control.api.deps import Admin, State
from trellis.control.api.state import ApiState
from trellis.control.translate.names import INBOUND_LISTENER_PREFIX

if TYPE_CHECKING:
    from trellis.control.explain import ConnectedNode

router = APIRouter(prefix="/api/v1")


class ExplainIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    source: str = Field(alias="from", min_length=1, max_length=512)
    method: str = Field(default="GET", min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=16384)
    headers: list[str] | dict[str, str] = Field(default_factory=list)
    namespace: str = Field(default="default", max_length=253)
    pick: str | None = Field(default=None, max_length=512)


@router.post("/explain", dependencies=[Admin])
async def explain_request(state: State, body: ExplainIn) -> dict[str, Any]:
    """The decision trail of one request from a service's sidecar to the app (or why not)."""
    from trellis.control.explain import ExplainError, explain, parse_request

    try:
        request = parse_request(
            body.source,
            body.method,
            body.url,
            body.headers,
            namespace=body.namespace,
            pick=body.pick,
        )
        return explain(state.ads.current, request, connected_nodes(state))
    except ExplainError as e:
        raise HTTPException(422, str(e)) from None


def connected_nodes(state: ApiState) -> list[ConnectedNode]:
    """Every connected node with the inbound listener it subscribes to and its mesh SPIFFE ID."""
    from trellis.control.explain import ConnectedNode

    listeners: dict[str, tuple[str, ...]] = {}
    for status in state.ads.nodes():
        view = status.to_json()
        names = (view.get("types", {}).get("LDS") or {}).get("names") or ()
        inbound = tuple(n for n in names if n.startswith(INBOUND_LISTENER_PREFIX))
        listeners[view["id"]] = listeners.get(view["id"], ()) + inbound
    principals: dict[str, str] = {}
    if state.ca is not None:
        for c in sorted(state.ca.current_certificates(), key=lambda c: c.not_after):
            if c.node is not None:
                principals[c.node] = c.spiffe_id  # the newest certificate wins
    return [
        ConnectedNode(info, listeners.get(info.id, ()), principals.get(info.id))
        for info in state.ads.node_infos()
    ]
