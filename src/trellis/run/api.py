"""A JSON client of the control plane's REST API on the standard library (`trellis run`).

`trellis run` is its app's sidecar for as long as the app lives, and httpx (with
the libraries it imports) cost ~11 MB of RSS in it, measured: more than a sidecar's
budget allows (60 MB). Its calls are few — a handful at start-up, then one
heartbeat every ttl/3 seconds from the registration thread — so one
`http.client` connection per call serves, from any thread; the asyncio side runs
them with `asyncio.to_thread`.

`ApiUnreachable` is a transport failure (refused, reset, timed out, not HTTP);
an HTTP answer of any status is a `Response` for the caller to judge.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit


class ApiUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ApiClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"control plane URL {base_url!r} is not http(s)://HOST[:PORT]")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn_type = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_type(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            answer = conn.getresponse()
            return Response(answer.status, answer.read())
        except (OSError, http.client.HTTPException) as e:
            raise ApiUnreachable(f"{method} {target}: {e or type(e).__name__}") from None
        finally:
            conn.close()

    def get(self, path: str, *, params: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Response:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any, *, params: dict[str, str] | None = None) -> Response:
        return self.request("PUT", path, body=body, params=params)
