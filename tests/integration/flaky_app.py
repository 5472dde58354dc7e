"""A test app that fails a share of its requests by itself: `python flaky_app.py --port P
--name N --fail-percent 50 [--status 500]`.

The demo web app fails only when the request asks (`?fail=P`), and a route sends the same
request to every version: a canary that is broken while the stable version is not needs
an app broken on its own. This one answers `--status` (500: an application error, what a
bad release gives) to `--fail-percent` of requests at random and 200 to the rest, with
JSON `{"name", "count"}` either way (`count`: requests seen, so a test can tell how many
reached it, retries included). Standard library only: `trellis run` starts it as a script.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def make_handler(name: str, fail_percent: float, status: int) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "flaky"
        # Head and body go out in separate writes: without this, Nagle holds the body
        # until the peer's delayed ACK (40 ms a response).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                seen[0] += 1
                count = seen[0]
            failed = self.path != "/healthz" and random.random() * 100 < fail_percent
            body = json.dumps({"name": name, "count": count}).encode()
            self.send_response(status if failed else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="flaky")
    p.add_argument("--fail-percent", type=float, default=50.0)
    p.add_argument("--status", type=int, default=500)
    args = p.parse_args()
    handler = make_handler(args.name, args.fail_percent, args.status)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print(f"READY {args.port}", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
