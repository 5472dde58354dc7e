"""Traffic through real sidecars: ring hash keeps a key on one endpoint (and every client
agrees which), 50 MB bodies stream both ways through two sidecars — chunked and with
Content-Length, uploads and a download — while each proxy's memory stays flat, and a
response with a transfer coding besides chunked keeps it.

The backends are the demo web app under `trellis run` (it answers an upload's length and
SHA-256, and `size=N` bytes on demand); the clients are httpx and curl through a
standalone `trellis proxy`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import Mesh, free_port
from tests.integration.traffic import SERVICE_PORT, RssWatch, rss_bytes, service_yaml, start_members

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"

RING_HASH_POLICY = """
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: web}
spec:
  service: web
  loadBalancer: {type: RING_HASH, ringHash: {header: x-user}}
"""


def test_ring_hash_keeps_each_key_on_one_endpoint(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + RING_HASH_POLICY)
    members = start_members(mesh, "web", [{"n": "a"}, {"n": "b"}, {"n": "c"}])
    workloads = {m.workload for m in members}
    keys = [f"user-{i}" for i in range(30)]
    first, second = client_sidecar(mesh, "client-1"), client_sidecar(mesh, "client-2")
    placed: dict[str, Counter[str]] = defaultdict(Counter)
    with first.client() as c:
        for _ in range(10):
            for key in keys:
                r = c.get(URL + "/", headers={"x-user": key})
                assert r.status_code == 200, r.text
                placed[key][r.json()["name"]] += 1
        unkeyed = Counter(c.get(URL + "/").json()["name"] for _ in range(60))
    # Each key always reached the same endpoint...
    spread = {key: list(seen) for key, seen in placed.items()}
    assert all(len(seen) == 1 for seen in spread.values()), spread
    # ...and the keys spread over all three (30 keys: all on two hosts has p ~ 2e-5).
    owner = {key: seen[0] for key, seen in spread.items()}
    assert set(owner.values()) == workloads, Counter(owner.values())
    # Without the header there is no key: calls spread too.
    assert len(unkeyed) == 3, unkeyed
    # Another client's sidecar builds the same ring: it sends each key to the same place.
    with second.client() as c:
        again = {key: c.get(URL + "/", headers={"x-user": key}).json()["name"] for key in keys}
    assert again == owner


# -- big bodies -----------------------------------------------------------------------------

SIZE = 50 * 1024 * 1024
BLOCK = 1024 * 1024
MAX_GROWTH = 40 * 1024 * 1024


def body_blocks(seed: bytes) -> Iterator[bytes]:
    """SIZE bytes in 1 MiB blocks (each block different, so a reordering shows)."""
    block = os.urandom(BLOCK)
    for i in range(SIZE // BLOCK):
        yield seed + i.to_bytes(4, "big") + block[len(seed) + 4 :]


def test_50mb_bodies_stream_through_both_sidecars_in_bounded_memory(
    mesh: Mesh, tmp_path: Path
) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}))
    service = run_service(mesh, "web")
    sidecar = client_sidecar(mesh)
    proxies = {"client proxy": sidecar.proc.pid, "service sidecar": service.proc.pid}

    blocks = list(body_blocks(b"upload"))
    digest = hashlib.sha256(b"".join(blocks)).hexdigest()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"".join(blocks))

    with sidecar.client(timeout=60) as c:
        for _ in range(20):  # warm both proxies up: pools, config, code paths
            assert c.post(URL + "/warm", content=b"x" * 70_000).status_code == 200
        baseline = {name: rss_bytes(pid) for name, pid in proxies.items()}
        with RssWatch(proxies.values(), interval=0.005) as watch:
            # httpx, chunked (a generator body has no length).
            r = c.post(URL + "/chunked", content=iter(blocks))
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["headers"].get("transfer-encoding") == "chunked"
            assert (answer["body_bytes"], answer["body_sha256"]) == (SIZE, digest)

            # curl, Content-Length (a file body; curl asks `Expect: 100-continue` first).
            done = subprocess.run(
                [
                    *("curl", "-sS", "--fail", "--proxy", sidecar.proxy_url, "--max-time", "60"),
                    *("--data-binary", f"@{upload}", URL + "/sized"),
                ],
                capture_output=True,
                timeout=90,
            )
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            assert answer["headers"].get("content-length") == str(SIZE)
            assert "transfer-encoding" not in answer["headers"]
            assert (answer["body_bytes"], answer["body_sha256"]) == (SIZE, digest)

            # A 50 MB download, read as it streams.
            received = 0
            with c.stream("GET", URL + f"/download?size={SIZE}") as r:
                assert r.status_code == 200
                assert r.headers["content-length"] == str(SIZE)
                for piece in r.iter_bytes():
                    assert piece.count(b"x") == len(piece)
                    received += len(piece)
            assert received == SIZE
        after = {name: rss_bytes(pid) for name, pid in proxies.items()}

    assert watch.samples > 5, "memory was hardly sampled during the transfers"
    for name, pid in proxies.items():
        peak = watch.peak[pid] - baseline[name]
        kept = after[name] - baseline[name]
        mib = 1024 * 1024
        assert peak < MAX_GROWTH, f"{name} grew by {peak / mib:.1f} MiB while streaming"
        assert kept < MAX_GROWTH, f"{name} kept {kept / mib:.1f} MiB after streaming"


# An app that answers every request with a gzip transfer coding under chunked framing
# (RFC 9112 §6.1): a body the proxy must pass on still coded, with the coding named.
GZIP_CHUNKED_APP = r"""
import gzip, socket, sys, threading
PLAIN = b"trellis " * 4096
CODED = gzip.compress(PLAIN)
def serve(conn):
    with conn:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            _, _, data = data.partition(b"\r\n\r\n")
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(CODED[i:i + 1000]), CODED[i:i + 1000])
                             for i in range(0, len(CODED), 1000))
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         + chunks + b"0\r\n\r\n")
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def _raw_exchange(proxy: str, request: bytes) -> tuple[bytes, bytes]:
    """(head, body as received) of one request sent through the proxy on a fresh socket."""
    host, _, port = proxy.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


def test_a_transfer_coding_besides_chunked_passes_both_sidecars(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}))
    port = free_port()
    run_service(mesh, "web", port=port, app=[sys.executable, "-c", GZIP_CHUNKED_APP, str(port)])
    sidecar = client_sidecar(mesh)
    plain = b"trellis " * 4096

    request = f"GET {URL}/coded HTTP/1.1\r\nHost: web:{SERVICE_PORT}\r\nConnection: close\r\n\r\n"
    head, body = _raw_exchange(sidecar.outbound, request.encode())
    assert head.startswith(b"HTTP/1.1 200"), head
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert fields[b"transfer-encoding"].lower() == b"gzip, chunked"
    assert gzip.decompress(_dechunk(body)) == plain

    # An HTTP/1.0 client cannot be sent a transfer coding: a 502 that says why.
    request = f"GET {URL}/coded HTTP/1.0\r\nHost: web:{SERVICE_PORT}\r\n\r\n"
    head, body = _raw_exchange(sidecar.outbound, request.encode())
    assert head.startswith(b"HTTP/1.1 502") or head.startswith(b"HTTP/1.0 502"), head
    assert b"UPE" in head
    assert b"transfer coding" in body
