"""A small synchronous client of the control plane's REST API, and how its errors are shown.

Server URL: `--server`, else `$TRELLIS_SERVER`, else the config file, else
http://127.0.0.1:7070. Token: `$TRELLIS_TOKEN`, else the config file. Every
failure becomes `CliError` (one line, exit 1); commands never show tracebacks.
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console

from trellis.cli.config_file import DEFAULT_SERVER, read_config
from trellis.model.limits import MAX_APPLY_BYTES, MAX_APPLY_DOCUMENTS

TIMEOUT_SECONDS = 30.0


class CliError(Exception):
    """A failure to report on stderr; `problems` are extra lines (validation errors)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True, slots=True)
class ApiError(Exception):
    status: int
    body: Any

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return f"HTTP {self.status}"


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        self.server = server.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT_SECONDS)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> Any:
        """The JSON body of a 2xx answer; raises ApiError for others, CliError when unreachable.

        `content` is a JSON body already encoded (see `post_documents`), `json` one to encode.
        """
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, params=clean, json=json, content=content, headers=headers
            )
        except httpx.TransportError as e:
            raise CliError(
                f"cannot reach the control plane at {self.server} ({type(e).__name__}: {e}); "
                "is `trellis control` running? (set --server or TRELLIS_SERVER)"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_success:
            return body
        raise ApiError(response.status_code, body)

    def post_documents(self, path: str, body: Any, *, params: dict[str, Any]) -> Any:
        """POST a multi-document body (apply, delete) as ONE request: the API applies it in
        one transaction, so it is never split. Refused here, before sending, when it is
        larger than the control plane must accept for one apply (`MAX_APPLY_BYTES`,
        `MAX_APPLY_DOCUMENTS`)."""
        count = len(body.get("documents", ())) if isinstance(body, dict) else 0
        if count > MAX_APPLY_DOCUMENTS:
            raise CliError(
                f"{count:,} documents, more than the {MAX_APPLY_DOCUMENTS:,} one apply may"
                " carry; apply them in several smaller sets"
            )
        content = jsonlib.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if len(content) > MAX_APPLY_BYTES:
            raise CliError(
                f"the manifests encode to {len(content):,} bytes, more than the "
                f"{MAX_APPLY_BYTES:,} one apply may carry; apply them in several smaller sets"
            )
        try:
            return self.request("POST", path, params=params, content=content)
        except ApiError as e:
            if e.status == 413:
                raise CliError(
                    f"the control plane refused {len(content):,} bytes as too large "
                    f"({e.message}); apply the manifests in several smaller sets"
                ) from None
            raise

    def close(self) -> None:
        self._http.close()


def connect(server: str | None) -> Client:
    saved = read_config()
    url = server or os.environ.get("TRELLIS_SERVER") or saved.server or DEFAULT_SERVER
    token = os.environ.get("TRELLIS_TOKEN") or saved.token
    return Client(url, token)


def dry_run_param(dry_run: bool) -> dict[str, str]:
    return {"dryRun": "true" if dry_run else "false"}


stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def reporting() -> Iterator[None]:
    """Turn CliError/ApiError into one-line messages (plus problems) on stderr and exit 1."""
    try:
        yield
    except CliError as e:
        _fail(e.message, e.problems)
    except ApiError as e:
        _fail(e.message, [])


def _fail(message: str, problems: list[str]) -> None:
    stderr.print(f"error: {message}", markup=False)
    for line in problems:
        stderr.print(f"  {line}", markup=False)
    raise typer.Exit(1)
