"""Plain HTTP/1.1 backends for the endpoint tests: in-process threaded servers on free
ports of 127.0.0.1 that count what the sidecar does to them (connections accepted, open
at once at most, requests), answer 500 while told to fail, and hold each response for a
while when told to; registered as a Service's endpoints with `register`.

A backend is registered as a Workload whose inbound port is the backend's own port: the
client sidecar then connects straight to it (plaintext, `mtls: false`), so what the
backend counts is exactly what the sidecar opened towards the endpoint.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.harness import Mesh


class CountingBackend:
    def __init__(self, name: str, *, failing: bool = False, hold: float = 0.0) -> None:
        self.name = name
        self.failing = failing  # answer 500 to everything while True
        self.hold = hold  # seconds each response waits before it is written
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.requests = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with backend.lock:
                    backend.accepted += 1
                    backend.open += 1
                    backend.most_open = max(backend.most_open, backend.open)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with backend.lock:
                        backend.open -= 1

            def do_GET(self) -> None:
                with backend.lock:
                    backend.requests += 1
                if backend.hold:
                    time.sleep(backend.hold)
                status = 500 if backend.failing else 200
                body = f'{{"name": "{backend.name}"}}'.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register(mesh: Mesh, service: str, backends: list[CountingBackend], extra: str = "") -> None:
    """Service SERVICE (port 9080) whose endpoints are `backends`, plus `extra` YAML."""
    text = f"""
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: {service}}}
spec:
  selector: {{app: {service}}}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"""
    for b in backends:
        text += f"""---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {b.name}, labels: {{app: {service}}}}}
spec:
  address: 127.0.0.1
  ports: [{{name: http, port: {b.port}, protocol: http}}]
  inbound: {{port: {b.port}}}
"""
    mesh.cp.apply(text + extra)
