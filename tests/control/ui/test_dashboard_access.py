"""Who may read what through the dashboard, against the real API app served by uvicorn:
pages and data need the admin token or a session opened with it; the session cookie
reads, and never writes; static files are public."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.control.api.served import TOKEN, Api, served_api

from trellis.control.ui.cookie import COOKIE


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with served_api(tmp_path) as served:
        yield served


async def _login(api: Api, token: str = TOKEN) -> httpx.Response:
    return await api.anonymous.post("/api/v1/session", headers={"Authorization": f"Bearer {token}"})


def _cookie_client(api: Api, session_id: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=str(api.anonymous.base_url), cookies={COOKIE: session_id})


async def test_without_the_token_pages_redirect_to_login_and_data_is_refused(api: Api) -> None:
    page = await api.anonymous.get("/ui/")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login"
    assert (await api.anonymous.get("/ui")).status_code == 308
    for path in ("/api/v1/traces", "/api/v1/traces/statistics"):
        refused = await api.anonymous.get(path)
        assert refused.status_code == 401, path
        assert "admin token" in refused.json()["error"]
    async with _cookie_client(api, "not-a-session") as forged:
        assert (await forged.get("/ui/")).status_code == 303
        assert (await forged.get("/api/v1/traces")).status_code == 401


async def test_login_page_and_static_files_are_public_and_same_origin(api: Api) -> None:
    login = await api.anonymous.get("/ui/login")
    assert login.status_code == 200
    assert "Admin token" in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    for path in (
        "/ui/static/js/main.js",
        "/ui/static/app.css",
        "/ui/static/vendor/cytoscape-3.35.0/cytoscape.min.js",
        "/ui/static/vendor/uplot-1.6.32/uPlot.iife.min.js",
    ):
        assert (await api.anonymous.get(path)).status_code == 200, path
    assert (await api.anonymous.get("/ui/static/../routes.py")).status_code == 404


async def test_a_wrong_token_opens_no_session(api: Api) -> None:
    refused = await _login(api, "wrong")
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    assert (await api.anonymous.post("/api/v1/session")).status_code == 401


async def test_the_session_cookie_reads_like_the_token(api: Api) -> None:
    opened = await _login(api)
    assert opened.status_code == 204
    set_cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie
    session_id = opened.cookies[COOKIE]
    async with _cookie_client(api, session_id) as browser:
        page = await browser.get("/ui/")
        assert page.status_code == 200
        assert "/ui/static/js/main.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        # The trace routes need the token; this app has no trace store, so passing the
        # check answers 503 where a refusal answers 401.
        assert (await browser.get("/api/v1/traces")).status_code == 503
        # an explicit credential wins, right or wrong
        wrong = await browser.get("/api/v1/traces", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_the_session_cookie_never_writes(api: Api) -> None:
    session_id = (await _login(api)).cookies[COOKIE]
    doc = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    async with _cookie_client(api, session_id) as browser:
        applied = await browser.post("/api/v1/apply", json={"documents": [doc]})
        assert applied.status_code == 401
        assert (await browser.put("/api/v1/services/web", json=doc)).status_code == 401
        assert (await browser.delete("/api/v1/services/web")).status_code == 401
        assert (await browser.post("/api/v1/tokens", json={})).status_code == 401
        # only the admin sends bodies: a GET with one and only the cookie is refused unread
        with_body = await browser.request("GET", "/api/v1/traces", content=b"{}")
        assert with_body.status_code == 401
    assert (await api.client.get("/api/v1/services")).json()["items"] == []


async def test_logout_ends_the_session(api: Api) -> None:
    session_id = (await _login(api)).cookies[COOKIE]
    async with _cookie_client(api, session_id) as browser:
        assert (await browser.get("/api/v1/traces")).status_code == 503
        closed = await browser.delete("/api/v1/session")
        assert closed.status_code == 204
        assert "Max-Age=0" in closed.headers["set-cookie"]
    async with _cookie_client(api, session_id) as stale:
        assert (await stale.get("/api/v1/traces")).status_code == 401
        assert (await stale.get("/ui/")).status_code == 303
