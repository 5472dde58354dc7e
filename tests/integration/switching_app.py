"""A test app that switches protocols whenever asked: `python switching_app.py --port P
--name N [--answer-upgrade PROTOCOL]`.

Servers that accept `Upgrade: h2c` (Go's h2c handler, Jetty, Tomcat, hypercorn) keep
serving requests on the switched connection; this app does the same in HTTP/1.1 after
its 101, so a request sent behind the upgrade reaches it unless the sidecar stopped it.
It answers any `Upgrade` with 101 naming that protocol (or PROTOCOL, to play an app that
switches to another one than asked), logs `REQ METHOD TARGET` per request (`REQ-UPGRADED`
after a switch) and answers 200 with `NAME METHOD TARGET host=HOST` in the body.
Standard library only: `trellis run` starts it as a script.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading


def log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(conn: socket.socket, name: str, answer_upgrade: str) -> None:
    reader = conn.makefile("rb")
    upgraded = False
    with conn, reader:
        while True:
            line = reader.readline()
            if not line:
                return
            method, target = line.decode("latin-1").split(" ")[:2]
            fields: dict[str, str] = {}
            while (field := reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = field.decode("latin-1").partition(":")
                fields[key.strip().lower()] = value.strip()
            length = int(fields.get("content-length", "0"))
            if length:
                reader.read(length)
            log(f"REQ{'-UPGRADED' if upgraded else ''} {method} {target}")
            asked = fields.get("upgrade", "")
            if asked and not upgraded:
                protocol = answer_upgrade or asked
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    b"Upgrade: %s\r\n\r\n" % protocol.encode()
                )
                upgraded = True
                continue
            body = f"{name} {method} {target} host={fields.get('host', '')}\n".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="switching")
    p.add_argument("--answer-upgrade", default="")
    args = p.parse_args()
    server = socket.create_server(("127.0.0.1", args.port))
    while True:
        conn, _ = server.accept()
        threading.Thread(
            target=serve, args=(conn, args.name, args.answer_upgrade), daemon=True
        ).start()


if __name__ == "__main__":
    main()
