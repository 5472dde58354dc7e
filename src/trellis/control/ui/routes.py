"""The dashboard's HTTP surface, installed on the API app by `install(app)`.

- `GET /ui/` the dashboard (one page; its views are `#/...` fragments): for the
  admin only, by session cookie or bearer token; anyone else is sent to the login page.
- `GET /ui/login` the login page, `GET /ui/static/...` scripts, styles and vendored
  libraries: public (they hold no data).
- `POST /api/v1/session` with `Authorization: Bearer TOKEN` (no body): opens a read
  session and sets its cookie (cookie.py). `DELETE /api/v1/session`: closes it.
Every data endpoint keeps its own check; the cookie only ever stands in for the
token on GET/HEAD. Pages say, by Content-Security-Policy, that they load and connect
to their own origin only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from trellis.control.api.deps import State, token_refusal
from trellis.control.ui.cookie import (
    COOKIE,
    SessionCookie,
    clear_cookie_header,
    session_id_of,
    set_cookie_header,
)
from trellis.control.ui.sessions import Sessions

STATIC = Path(__file__).parent / "static"
# Own origin only: no CDN, no beacon, no frame around us. Styles: the libraries set
# element styles from script, which 'unsafe-inline' for style-src covers.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_HINT = (
    "the dashboard needs the admin token: `trellis control` printed it on first start and "
    "saved it in the CLI config (~/.config/trellis/config.json or $TRELLIS_CONFIG)"
)

pages = APIRouter(include_in_schema=False)
session_router = APIRouter(prefix="/api/v1/session", tags=["dashboard"])


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.ui_sessions
    return sessions


@pages.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@pages.get("/ui/")
async def dashboard(
    state: State, authorization: Annotated[str | None, Header()] = None
) -> Response:
    if token_refusal(state.tokens, authorization) is not None:
        return RedirectResponse("/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@pages.get("/ui/login")
async def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html", headers=PAGE_HEADERS)


@session_router.post("", status_code=204)
async def open_session(
    request: Request, state: State, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Open a read session for the dashboard: send the admin token as a bearer token."""
    refusal = token_refusal(state.tokens, authorization)
    if refusal is not None:
        reason = refusal.partition(":")[0]
        raise HTTPException(401, f"{reason}: {LOGIN_HINT}", headers={"WWW-Authenticate": "Bearer"})
    token = (authorization or "").partition(" ")[2].strip()
    sessions = _sessions(request)
    session_id = sessions.open(token)
    cookie = set_cookie_header(session_id, int(sessions.ttl_seconds))
    return Response(status_code=204, headers={"Set-Cookie": cookie, "Cache-Control": "no-store"})


@session_router.delete("", status_code=204)
async def close_session(request: Request) -> Response:
    """Close the session named by the cookie (if any) and clear the cookie."""
    session_id = session_id_of(request.headers.get("cookie", ""))
    if session_id is not None:
        _sessions(request).close(session_id)
    return Response(status_code=204, headers={"Set-Cookie": clear_cookie_header()})


def install(app: FastAPI, sessions: Sessions | None = None) -> None:
    """Serve the dashboard on `app`: pages, static files, login, and the session cookie."""
    app.state.ui_sessions = sessions or Sessions()
    app.add_middleware(SessionCookie, sessions=app.state.ui_sessions)
    app.include_router(pages)
    app.include_router(session_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


__all__ = ["COOKIE", "install"]
