"""Metrics endpoints: Prometheus HTTP service discovery, and the scrape token for the admin.

- `GET /api/v1/metrics/targets`: every proxy's metrics endpoint with its workload labels,
  in Prometheus's `http_sd_configs` format (control/metrics/targets.py). Needs
  `Authorization: Bearer <scrape token>` (what Prometheus sends with `authorization:
  {credentials_file: ...}` in its http_sd_config) or the admin token: made for a
  Prometheus on another host, which holds the scrape token anyway.
- `GET /api/v1/metrics/scrape-token`: admin token only. `{"token", "sha256", "file"}`:
  the token for Prometheus, its digest for proxies, where the control plane keeps it.

503 when this control plane runs without a scrape token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException

from trellis.control.api.deps import Admin, State
from trellis.control.metrics.scrape_token import ScrapeToken
from trellis.control.metrics.targets import target_groups

router = APIRouter(prefix="/api/v1/metrics")

SD_HINT = (
    "service discovery needs the scrape token (`trellis metrics token`) or the admin token: "
    "send 'Authorization: Bearer TOKEN' (Prometheus: authorization: {credentials_file: FILE})"
)


def _scrape_token(state: State) -> ScrapeToken:
    token = state.scrape_token
    if token is None:
        raise HTTPException(503, "this control plane runs without a scrape token")
    return token


@router.get("/targets")
async def targets(
    state: State, authorization: Annotated[str | None, Header()] = None
) -> list[dict[str, Any]]:
    scrape = _scrape_token(state)
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not (scrape.verify(token) or state.tokens.verify(token)):
        reason = "missing token" if not authorization else "invalid token"
        raise HTTPException(401, f"{reason}: {SD_HINT}", headers={"WWW-Authenticate": "Bearer"})
    snapshot = await state.store.snapshot()
    return target_groups(snapshot.docs)


@router.get("/scrape-token", dependencies=[Admin])
async def scrape_token(state: State) -> dict[str, str]:
    scrape = _scrape_token(state)
    return {
        "token": scrape.token,
        "sha256": scrape.sha256,
        "file": str(scrape.path) if scrape.path is not None else "",
    }
