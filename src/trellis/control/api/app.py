"""The REST API's app factory: routers, and errors as `{"error": ...}` JSON bodies.

`create_app(state)` builds a FastAPI app around live parts it is given; it
starts nothing itself, so tests wrap it around a real store in tmp_path and
`trellis control` serves it with uvicorn on its own loop.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trellis.control.api import explain, identity, registry, resources, signals, traces, views
from trellis.control.api.guard import RequestGuard
from trellis.control.api.metrics import router as metrics_router
from trellis.control.api.state import ApiState
from trellis.control.api.writes import Rejected
from trellis.control.limits import API_MAX_BODY_BYTES, MAX_JSON_DEPTH, size_text
from trellis.control.ui import routes as ui
from trellis.store.base import Conflict


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Rejected)
    problems = [p.to_json() for p in exc.problems]
    return JSONResponse({"error": "invalid", "problems": problems}, status_code=422)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"path": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
        for e in exc.errors()
    ]
    text = "; ".join(f"{d['path']}: {d['reason']}" for d in details)
    return JSONResponse({"error": f"invalid request: {text}", "details": details}, status_code=422)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"conflict: {exc}; retry"}, status_code=409)


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="Trellis control plane",
        version="v1",
        description="Mesh resources, workload registry, proxy status, join tokens, the CA, "
        "traces, request explanations and Prometheus service discovery (`/api/v1/metrics/targets`: "
        "the scrape token or the admin token). Reads of the mesh's configuration are open; join "
        "tokens, traces and explanations (traffic and policy detail) and every write need "
        "`Authorization: Bearer <admin token>`. "
        "Only the admin sends bodies: a request with a body and no token gets 401 before it is "
        f"read; a body over {size_text(API_MAX_BODY_BYTES)} gets 413, JSON nested over "
        f"{MAX_JSON_DEPTH} levels 400.",
    )
    app.state.api = state
    # Outermost of ours: no body is read before the admin token is checked, nor past the bounds.
    app.add_middleware(RequestGuard, tokens=state.tokens)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(Conflict, _conflict)
    app.include_router(views.health_router)
    # Fixed paths before the `/{plural}` patterns that would otherwise swallow them.
    app.include_router(views.router)
    app.include_router(registry.router)
    app.include_router(identity.tokens_router)
    app.include_router(identity.ca_router)
    app.include_router(identity.identities_router)
    app.include_router(explain.router)
    app.include_router(metrics_router)
    app.include_router(traces.otlp_router)
    app.include_router(traces.router)
    app.include_router(signals.router)
    app.include_router(signals.tap_router)
    # The dashboard at /ui, and its read session (a cookie that stands in for the token on GET).
    ui.install(app)
    app.include_router(resources.router)
    return app
