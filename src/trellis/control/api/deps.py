"""FastAPI dependencies: the ApiState of the running app, and the admin-token check for writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from trellis.control.api.state import ApiState

TOKEN_HINT = (
    "writes need the admin token: send 'Authorization: Bearer TOKEN'. `trellis control` printed it "
    "on first start and saved it in the CLI config (~/.config/trellis/config.json or "
    "$TRELLIS_CONFIG); the CLI also reads $TRELLIS_TOKEN"
)


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


def require_admin(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not state.tokens.verify(token.strip()):
        reason = "missing admin token" if not authorization else "invalid admin token"
        raise HTTPException(401, f"{reason}: {TOKEN_HINT}", headers={"WWW-Authenticate": "Bearer"})


Admin = Depends(require_admin)
