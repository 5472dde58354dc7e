"""A test app that shows every header field as received, repeats included: `python
header_echo_app.py --port P --name N`.

The demo web app answers its request's headers as a dictionary, which keeps one value per
name; a test of `add` against `set` needs to see both copies of a repeated field. This app
answers 200 with JSON `{"name", "method", "target", "fields": [[name, value], ...]}` (names
lower-cased, in the order received) and adds to its response one field per `respond=NAME:VALUE`
query parameter (repeat it), so a test can give the sidecar response fields to modify.
Standard library only: `trellis run` starts it as a script.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "header-echo"
        # Head and body go out in separate writes: without this, Nagle holds the body
        # until the peer's delayed ACK (40 ms a response).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            fields = [[k.lower(), v] for k, v in self.headers.items()]
            body = json.dumps(
                {"name": name, "method": self.command, "target": self.path, "fields": fields}
            ).encode()
            self.send_response(200)
            for pair in parse_qs(urlsplit(self.path).query).get("respond", []):
                field, _, value = pair.partition(":")
                self.send_header(field, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="header-echo")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.name))
    server.daemon_threads = True
    print(f"READY {args.port}", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
