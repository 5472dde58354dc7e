"""FastAPI dependencies: the ApiState of the running app, and the admin-token check for writes.

`token_refusal` is the check itself; the request guard (guard.py) runs it before
a body is read, and `require_admin` again for the route (and its OpenAPI entry).
"""

from __future__ import annotations

from typing import Annotated, Protocol

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


class TokenVerifier(Protocol):
    def verify(self, token: str | None) -> bool: ...


def token_refusal(tokens: TokenVerifier, authorization: str | None) -> str | None:
    """Why `authorization` (the header's value) does not carry the admin token; None if it does."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and tokens.verify(token.strip()):
        return None
    reason = "missing admin token" if not authorization else "invalid admin token"
    return f"{reason}: {TOKEN_HINT}"


def require_admin(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    refusal = token_refusal(state.tokens, authorization)
    if refusal is not None:
        raise HTTPException(401, refusal, headers={"WWW-Authenticate": "Bearer"})


Admin = Depends(require_admin)
