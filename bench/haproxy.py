"""HAProxy (Debian's) as the benchmarks' backend and as the reference proxy pair.

`backend_config` is the HTTP backend every data-plane path ends at: one
HAProxy thread answering every request itself (`http-request return`, a short
fixed body, keep-alive), so no Python and no disk is on its path.
`hop_config` is one HTTP-mode proxy of the reference pair: keep-alive on both
sides, upstream connections shared between clients (`http-reuse always`, as
a sidecar's per-endpoint pool does), optionally TLS towards the next hop
(`upstream_tls`: client certificate, verifies the server against the CA) or
TLS on its own listener (`listen_tls`: requires and verifies a client
certificate), which together make mutual TLS between the two proxies.

The `*_config` functions are pure (text only); `start` runs one process
(`haproxy -db`: foreground, no master process, so the PID is the proxy).

Must not know what is measured through it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.certs import SERVER_NAME, TlsFiles
from bench.procs import Child

BACKEND_BODY = "trellis-bench backend ok"

_GLOBAL = """\
global
    nbthread 1
    maxconn 4096
    tune.bufsize 16384

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
"""


def binary() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def version() -> str:
    """HAProxy's version, e.g. `2.6.12-1+deb12u4`."""
    out = subprocess.run([binary(), "-v"], capture_output=True, text=True, timeout=10)
    words = out.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


def backend_config(port: int, body: str = BACKEND_BODY) -> str:
    """A backend answering 200 with `body` (text/plain) to every request on 127.0.0.1:`port`."""
    if '"' in body or "\\" in body or "\n" in body:
        raise ValueError("body must not need quoting")
    return (
        f"{_GLOBAL}\n"
        "frontend backend\n"
        f"    bind 127.0.0.1:{port}\n"
        f'    http-request return status 200 content-type text/plain string "{body}"\n'
    )


def hop_config(
    listen_port: int,
    upstream_port: int,
    *,
    listen_tls: TlsFiles | None = None,
    upstream_tls: TlsFiles | None = None,
) -> str:
    """One proxy: 127.0.0.1:`listen_port` → 127.0.0.1:`upstream_port`, HTTP mode, keep-alive."""
    bind = f"    bind 127.0.0.1:{listen_port}"
    if listen_tls is not None:
        bind += (
            f" ssl crt {listen_tls.server} ca-file {listen_tls.ca} verify required alpn http/1.1"
        )
    server = f"    server next 127.0.0.1:{upstream_port}"
    if upstream_tls is not None:
        server += (
            f" ssl crt {upstream_tls.client} ca-file {upstream_tls.ca} verify required"
            f" verifyhost {SERVER_NAME} sni str({SERVER_NAME}) alpn http/1.1"
        )
    return (
        f"{_GLOBAL}\n"
        "frontend hop\n"
        f"{bind}\n"
        "    default_backend next\n"
        "\n"
        "backend next\n"
        "    http-reuse always\n"
        f"{server}\n"
    )


def start(config: str, logs: Path, name: str, prefix: list[str]) -> Child:
    """Write `config` under `logs`, check it, and run HAProxy on it (argv prefixed by `prefix`)."""
    path = logs / f"{name}.cfg"
    path.write_text(config)
    check = subprocess.run(
        [binary(), "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejected {name}.cfg:\n{check.stdout}{check.stderr}")
    return Child([*prefix, binary(), "-db", "-f", str(path)], logs, name)
