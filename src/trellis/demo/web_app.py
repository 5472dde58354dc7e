"""A small HTTP/1.1 service for the demo and the tests: plain code, no mesh library.

Every answer is JSON naming the workload that served it. The app calls other
services by name only (`--call http://ratings:9080/`), with urllib, which
honours HTTP_PROXY: under `trellis run` those calls go through the sidecar
without the app knowing.

Knobs in the query string, for the tests and the demo:
- `status=N` answers N; `fail=odd` answers 503 to every other request
  (counted per process); `fail=P` (0-100) answers 503 to P% of requests;
- `delay=S` waits S seconds first; `size=N` answers N bytes of body;
- a request body is read as it streams (Content-Length or chunked) and
  answered with its length and SHA-256, never held whole.

Trace headers: every call it makes carries the trace context and request id of
the request being served (W3C `traceparent`/`tracestate`, B3 single and multi,
`x-request-id`), as an app in a mesh must for one request to be one trace.

`--log-requests` prints `REQ METHOD TARGET` for every request it receives, so a
test can tell that nothing reached the app. `GET /healthz` answers 503 while the
file `--unhealthy-file` exists (to show health checks), else 200. Prints
`READY PORT` once listening.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024
# What an app forwards for its sidecars to join its calls to the request it serves.
TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
)


class App:
    def __init__(
        self, name: str, calls: list[str], log_requests: bool, unhealthy_file: str = ""
    ) -> None:
        self.name = name
        self.unhealthy_file = unhealthy_file
        self.calls = calls
        self.log_requests = log_requests
        self.count = 0
        self.lock = threading.Lock()

    def next_count(self) -> int:
        with self.lock:
            self.count += 1
            return self.count


def _read_body(handler: BaseHTTPRequestHandler) -> tuple[int, str]:
    """Stream the request body: (length, sha256 hex)."""
    digest = hashlib.sha256()
    total = 0
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = handler.rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            left = size
            while left:
                piece = handler.rfile.read(min(CHUNK, left))
                if not piece:
                    raise ConnectionError("body ended early")
                digest.update(piece)
                total += len(piece)
                left -= len(piece)
            handler.rfile.readline(16)
    else:
        left = int(handler.headers.get("content-length") or 0)
        while left:
            piece = handler.rfile.read(min(CHUNK, left))
            if not piece:
                raise ConnectionError("body ended early")
            digest.update(piece)
            total += len(piece)
            left -= len(piece)
    return total, digest.hexdigest()


def trace_headers(headers: Any) -> dict[str, str]:
    """The propagation headers of the request being served, to send on its calls."""
    return {name: headers[name] for name in TRACE_HEADERS if headers.get(name) is not None}


def _call(url: str, headers: dict[str, str] | None = None) -> Any:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        return {"error": e.code, "flags": e.headers.get("x-trellis-flags")}
    except (urllib.error.URLError, OSError, ValueError) as e:
        return {"error": str(e)}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "trellis-demo-web"
        # Head and body go out in separate writes: without this, Nagle holds the body
        # until the peer's delayed ACK (40 ms a response).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            if app.log_requests:
                print(f"REQ {self.command} {self.path}", flush=True)
            if self.path == "/healthz":
                sick = bool(app.unhealthy_file) and os.path.exists(app.unhealthy_file)
                self._send_size(503 if sick else 200, 0)
                return
            count = app.next_count()
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            body_len, body_sha = _read_body(self)  # a GET may have a body too: never leave it
            if "delay" in query:
                time.sleep(float(query["delay"]))
            status = int(query.get("status", 200))
            fail = query.get("fail")
            odd = fail == "odd" and count % 2 == 1
            if odd or (fail and fail != "odd" and random.random() * 100 < float(fail)):
                status = 503
            if "size" in query:
                self._send_size(status, int(query["size"]))
                return
            answer: dict[str, Any] = {
                "name": app.name,
                "service": os.environ.get("TRELLIS_SERVICE", ""),
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_bytes": body_len,
                "body_sha256": body_sha,
                "count": count,
            }
            if app.calls and status < 400:
                forward = trace_headers(self.headers)
                answer["calls"] = {url: _call(url, forward) for url in app.calls}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            # Head and body in one write: an app killed between two writes would leave its
            # caller a head without its body, a truncation no proxy can repair or retry
            # (tests that kill workloads under load count every failed call).
            socket_writer, self.wfile = self.wfile, io.BytesIO()
            try:
                self.end_headers()  # into the buffer
                head = self.wfile.getvalue()
            finally:
                self.wfile = socket_writer
            self.wfile.write(head if self.command == "HEAD" else head + data)

        def _send_size(self, status: int, size: int) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(size))
            self.end_headers()
            block = b"x" * CHUNK
            left = size
            while left:
                piece = block[: min(CHUNK, left)]
                self.wfile.write(piece)
                left -= len(piece)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default=os.environ.get("TRELLIS_WORKLOAD", "web"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.add_argument("--call", action="append", default=[], help="URL to call per request")
    p.add_argument("--log-requests", action="store_true")
    p.add_argument("--unhealthy-file", default="", help="/healthz answers 503 while it exists")
    args = p.parse_args(argv)
    app = App(args.name, args.call, args.log_requests, args.unhealthy_file)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(app))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
