"""Keep a Workload registered: register with a TTL lease, heartbeat, deregister.

This is the client side of the control plane's registry API, used by
`trellis run` and by programs that register themselves. It runs in a daemon
thread so that it works beside any server (grpcio's threads, asyncio, ...).

Failure behaviour: registration at start must succeed (`start` raises). After
that a heartbeat that fails (control plane away) is retried at the next
interval and never stops the workload; a heartbeat answered 404 (the lease is
unknown: expired, or a control plane that lost it) registers again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from trellis.run.api import ApiClient, ApiUnreachable

log = logging.getLogger("trellis.run.registration")


class Registration:
    def __init__(
        self, api: str, token: str, workload: dict[str, Any], *, ttl: float = 10.0
    ) -> None:
        self.workload = workload
        self.ttl = ttl
        self.healthy = True
        meta = workload["metadata"]
        self._ref = {"namespace": meta.get("namespace", "default"), "name": meta["name"]}
        self._api = ApiClient(api, token, timeout=max(1.0, ttl / 3))
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeats = 0
        self.failures = 0

    def _register(self) -> None:
        r = self._api.post(
            "/api/v1/registry/register", {"workload": self.workload, "ttlSeconds": self.ttl}
        )
        if r.status_code != 200:
            raise RuntimeError(f"registration refused ({r.status_code}): {r.text}")

    def _heartbeat(self) -> None:
        r = self._api.post("/api/v1/registry/heartbeat", {**self._ref, "healthy": self.healthy})
        if r.status_code == 404:
            log.info("lease of %s unknown to the control plane: registering again", self._ref)
            self._register()
        elif r.status_code != 200:
            raise RuntimeError(f"heartbeat refused ({r.status_code}): {r.text}")
        self.heartbeats += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if self._paused.is_set():
                continue
            try:
                self._heartbeat()
            except (ApiUnreachable, RuntimeError) as e:
                self.failures += 1
                log.warning("heartbeat for %s failed (will retry): %s", self._ref, e)

    def start(self) -> None:
        """Register now (raises on failure), then heartbeat every ttl/3 seconds. A lease
        starts healthy: when `healthy` is already False, a heartbeat says so at once."""
        self._register()
        if not self.healthy:
            try:
                self._heartbeat()
            except (ApiUnreachable, RuntimeError) as e:  # the loop says it again
                self.failures += 1
                log.warning("heartbeat for %s failed (will retry): %s", self._ref, e)
        self._thread = threading.Thread(target=self._loop, name="trellis-heartbeat", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop heartbeating (the lease will expire) without deregistering."""
        self._paused.set()

    def close(self, deregister: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
        if deregister:
            with contextlib.suppress(ApiUnreachable):
                self._api.post("/api/v1/registry/deregister", self._ref)

    def __enter__(self) -> Registration:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
