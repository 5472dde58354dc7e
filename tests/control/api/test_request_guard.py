"""The API's door (guard.py, serving.py) on the real app served by uvicorn: the token before
the body, the bounds on head, body, nesting and documents, each answered with its status.

The memory side (a 40 MB body, 64 MiB chunked) is shown on a real `trellis control`
process in tests/cli/test_control_bounds.py.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest
from tests.control.api.served import TOKEN, Api

from trellis.control.api import AdminToken, ApiState, create_app
from trellis.control.api.guard import RequestHead, before_body
from trellis.control.api.serving import head_refusal
from trellis.control.limits import API_MAX_DOCUMENTS, API_MAX_HEAD_BYTES, MAX_JSON_DEPTH


def test_every_route_that_takes_a_body_needs_the_admin_token() -> None:
    # The guard's rule, "only the admin sends bodies", must never refuse what a route takes.
    # (The OpenAPI document is the public list of routes; `require_admin` shows in it as
    # the `authorization` header it reads.)
    app = create_app(ApiState(None, None, None, AdminToken.of("x"), None))  # type: ignore[arg-type]
    operations = [
        (method.upper(), path, op)
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
    ]
    takes_body = [(m, p, op) for m, p, op in operations if "requestBody" in op]
    assert len(takes_body) >= 8
    open_with_body = [
        f"{m} {p}"
        for m, p, op in takes_body
        if not any(x["in"] == "header" and x["name"] == "authorization" for x in op["parameters"])
    ]
    assert open_with_body == []


async def _raw(api: Api, data: bytes) -> bytes:
    """Send `data` on a new connection, then read until the server closes it."""
    url = urlsplit(str(api.client.base_url))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_a_body_without_the_token_is_answered_before_it_is_sent(api: Api) -> None:
    # A client that asks before sending (Expect: 100-continue, as curl does for big bodies)
    # gets the 401 at once and need not send its gigabyte.
    answer = await _raw(
        api,
        _head(
            "POST",
            "/api/v1/apply",
            "Content-Type: application/json",
            f"Content-Length: {1 << 30}",
            "Expect: 100-continue",
        ),
    )
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 401 Unauthorized"
    head, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower() and b"www-authenticate: Bearer" in head
    assert json.loads(body)["error"].startswith("missing admin token")


async def test_only_the_admin_sends_bodies_whatever_the_route(api: Api) -> None:
    r = await api.anonymous.request("GET", "/api/v1/services", content=b'{"x": 1}')
    assert r.status_code == 401
    assert (await api.anonymous.get("/api/v1/services")).status_code == 200
    # No body: the route's own check answers (the same 401), nothing else changes.
    r = await api.anonymous.post("/api/v1/apply")
    assert r.status_code == 401 and r.json()["error"].startswith("missing admin token")
    r = await api.anonymous.get("/api/v1/tokens")
    assert r.status_code == 401


async def test_too_many_documents_are_refused_with_the_limit(api: Api) -> None:
    documents = [{}] * (API_MAX_DOCUMENTS + 1)
    r = await api.client.post("/api/v1/apply", json={"documents": documents})
    assert r.status_code == 422
    assert f"at most {API_MAX_DOCUMENTS} items" in r.json()["error"]
    assert len(r.content) < 1000  # one line, not one problem per document
    r = await api.client.post("/api/v1/delete", json={"documents": documents})
    assert r.status_code == 422 and f"at most {API_MAX_DOCUMENTS} items" in r.json()["error"]


async def test_deep_json_is_refused_on_every_route_that_takes_a_body(api: Api) -> None:
    deep = b"[" * 2000 + b"]" * 2000
    r = await api.client.put(
        "/api/v1/services/web",
        content=b'{"kind": "Service", "spec": %s}' % deep,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": f"invalid request: JSON nested 2001 levels deep; at most {MAX_JSON_DEPTH} "
        "are accepted",
        "limit": MAX_JSON_DEPTH,
    }
    # The connection read the whole body: it stays usable.
    assert (await api.client.get("/healthz")).status_code == 200


async def test_a_request_line_or_head_over_the_bound_gets_414_or_431_and_a_close(
    api: Api,
) -> None:
    long_path = "/" + "a" * API_MAX_HEAD_BYTES
    answer = await _raw(api, _head("GET", long_path))
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert b"connection: close" in answer
    assert b"the request line is longer than the API accepts (16 KiB (16384 bytes))" in answer

    big_header = "X-Filler: " + "b" * API_MAX_HEAD_BYTES
    answer = await _raw(api, _head("GET", "/healthz", big_header))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")

    # A head just under the bound is served.
    fits = "X-Filler: " + "b" * (API_MAX_HEAD_BYTES - 200)
    answer = await _raw(api, _head("GET", "/healthz", fits, "Connection: close"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    ("buffered", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", None),
        (b"GET /" + b"a" * 100, 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 100, 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70 + b"\r\n\r\n" + b"body" * 100, None),
        (b"GET / HTTP/1.1\nX: 1\n\n" + b"body" * 100, None),
    ],
)
def test_head_refusal(buffered: bytes, status: int | None) -> None:
    assert head_refusal(buffered, 100) == status


class _Tokens:
    def verify(self, token: str | None) -> bool:
        return token == TOKEN


def _scope(*headers: tuple[str, str]) -> dict[str, object]:
    return {"headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((), None),  # no body: the route decides
        ((("content-length", "0"),), None),
        ((("content-length", "10"),), 401),
        ((("transfer-encoding", "chunked"),), 401),
        ((("content-length", "10"), ("authorization", "Bearer nope")), 401),
        ((("content-length", "10"), ("authorization", f"Bearer {TOKEN}")), None),
        ((("content-length", "101"), ("authorization", f"Bearer {TOKEN}")), 413),
        ((("transfer-encoding", "chunked"), ("authorization", f"bearer {TOKEN}")), None),
    ],
)
def test_before_body(headers: tuple[tuple[str, str], ...], status: int | None) -> None:
    refusal = before_body(RequestHead.of(_scope(*headers)), _Tokens(), max_body=100)
    assert (refusal.status if refusal is not None else None) == status
