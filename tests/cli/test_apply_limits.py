"""The real `trellis apply` on hostile manifests: one clear error, no traceback, nothing applied.

A deeply nested file, the same on standard input, a YAML bomb (with the CLI's
address space capped, so a regression fails here instead of exhausting the
machine), a set of manifests too large for one apply request, and a control
plane that answers 413.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli.control_plane import TRELLIS, ControlPlane
from tests.model.test_yaml_limits import block_nesting, route_bomb

from trellis.model.limits import MAX_APPLY_BYTES, MAX_DEPTH

SERVICE = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: {name}, namespace: limits-ns}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 9080}}]
"""
ADDRESS_SPACE = 2 * 2**30  # the CLI needs ~400 MB of address space; the bomb, tens of GB


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def trellis(
    cp: ControlPlane,
    *args: str,
    stdin: str | None = None,
    server: str | None = None,
    capped: bool = True,
) -> subprocess.CompletedProcess[str]:
    """The real CLI, its address space capped unless told (no fork-time hook while this
    process runs threads); `stdin` feeds `-f -`."""
    return subprocess.run(
        [TRELLIS, *args, *(["--server", server] if server else [])],
        env=cp.env,
        cwd=cp.workdir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_cap_memory if capped else None,
    )


def services_in(cp: ControlPlane, namespace: str) -> list[str]:
    listed = cp.run("get", "services", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return [d["metadata"]["name"] for d in json.loads(listed.stdout)["items"]]


def test_a_deeply_nested_file_is_one_error_line_and_nothing_is_applied(
    cp: ControlPlane, tmp_path: Path
) -> None:
    deep = tmp_path / "deep.yaml"
    valid = SERVICE.format(name="before-deep")
    deep.write_text(valid + "---\n" + block_nesting(5000))  # PyYAML recursed to death here
    r = trellis(cp, "apply", "-f", str(deep))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    line = valid.count("\n") + 1 + MAX_DEPTH + 1  # the separator, then the 65th level
    assert r.stderr.splitlines() == [
        "error: 1 unreadable file, nothing applied",
        f"  {deep}:{line}: YAML: nested deeper than {MAX_DEPTH} levels of mappings and sequences",
    ]
    assert services_in(cp, "limits-ns") == []


def test_standard_input_is_bounded_the_same(cp: ControlPlane) -> None:
    r = trellis(cp, "apply", "-f", "-", stdin="spec: " + "[" * 900 + "]" * 900 + "\n")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[1:] == [
        f"  <stdin>:1: YAML: nested deeper than {MAX_DEPTH} levels of mappings and sequences"
    ]
    ok = trellis(cp, "apply", "-f", "-", stdin=SERVICE.format(name="from-stdin"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "service/from-stdin created\n"
    assert services_in(cp, "limits-ns") == ["from-stdin"]


def test_a_yaml_bomb_is_refused_before_it_expands(cp: ControlPlane, tmp_path: Path) -> None:
    """8 KB that validate as one HTTPRoute of 64 x 1000 x 1000 header matches once expanded:
    without the alias bound the CLI dies of MemoryError under the cap (tens of GB without)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(SERVICE.format(name="before-bomb") + "---\n" + route_bomb(1000, 1000, 64))
    r = trellis(cp, "apply", "-f", str(bomb))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr
    (headline, problem) = r.stderr.splitlines()
    assert headline == "error: 1 unreadable file, nothing applied"
    assert problem.startswith(f"  {bomb}:13: YAML: aliases expand this input by more than")
    assert "before-bomb" not in services_in(cp, "limits-ns")


def test_manifests_beyond_one_apply_request_are_refused_before_sending(
    cp: ControlPlane, tmp_path: Path
) -> None:
    big = tmp_path / "big.yaml"
    annotation = "x" * (2**20)
    docs = [
        SERVICE.format(name=f"big-{i}").replace(
            "namespace: limits-ns}", f"namespace: limits-ns, annotations: {{blob: {annotation}}}}}"
        )
        for i in range(MAX_APPLY_BYTES // 2**20 + 1)
    ]
    big.write_text("---\n".join(docs))
    r = trellis(cp, "apply", "-f", str(big))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: the manifests encode to 17,8")
    assert line.endswith(
        f"bytes, more than the {MAX_APPLY_BYTES:,} one apply may carry;"
        " apply them in several smaller sets"
    )
    assert not [n for n in services_in(cp, "limits-ns") if n.startswith("big-")]


@contextmanager
def answering_413() -> Iterator[str]:
    """A real HTTP server on a free port that reads a request's head and answers 413."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                body = b'{"error": "request body too large"}'
                conn.sendall(
                    b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_a_413_from_the_control_plane_says_to_apply_in_smaller_sets(
    cp: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "small.yaml"
    manifest.write_text(SERVICE.format(name="small"))
    with answering_413() as server:
        r = trellis(cp, "apply", "-f", str(manifest), server=server, capped=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: the control plane refused ")
    assert line.endswith(
        " bytes as too large (request body too large); apply the manifests in several smaller sets"
    )
