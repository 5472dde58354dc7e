"""Authorization bypasses, tried through real sidecars: no spelling of a protected path and no
CONNECT tunnel reaches the app past a policy.

One mesh for the module (MeshConfig PERMISSIVE, the default path normalization): `shop`
with a DENY on `/admin` and `/admin/*`, `vault` with an ALLOW limited to `/public/*`,
`pipe` whose port is declared tcp (tunnels allowed, decided at L4), each the demo web app
under `trellis run --log-requests` (it prints `REQ METHOD TARGET` for every request it
receives), and a standalone client `trellis proxy` with a mesh identity.

Every spelling is sent with a raw socket (httpx would normalize some itself) through the
client sidecar's outbound listener (to the peer over mTLS) and straight at the service
sidecar's inbound listener (plaintext, PERMISSIVE). Each carries a `case=` query marker
(the query is never normalized), so the app's log says what arrived for each: a denied
or refused spelling must arrive nowhere, an allowed one exactly once, in normal form.
Beyond the per-case expectations, no line the shop app logged may read as /admin to a
lenient server (one that decodes, takes `\\` for `/`, drops `;` parameters, merges
slashes and resolves dots), and every line the vault app logged must read as /public/.
"""

from __future__ import annotations

import posixpath
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for

pytestmark = pytest.mark.integration

IO_TIMEOUT = 10.0
CLIENT_ID = "spiffe://trellis.local/ns/default/sa/client"

PERMISSIVE = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {mtls: {mode: PERMISSIVE}}
"""
POLICIES = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: shop}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin, /admin/*]}}]}]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public-only}
spec:
  selector: {matchLabels: {app: vault}}
  rules: [{to: [{operation: {paths: [/public/*]}}]}]
"""


def pipe_policy(rule: str, action: str = "ALLOW") -> str:
    return (
        "apiVersion: trellis.dev/v1alpha1\nkind: AuthorizationPolicy\n"
        "metadata: {name: pipe-policy}\n"
        f"spec: {{selector: {{matchLabels: {{app: pipe}}}}, action: {action}, rules: [{rule}]}}\n"
    )


@dataclass
class World:
    mesh: Mesh
    members: dict[str, Member]
    client: Sidecar


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(Path(tmp_path_factory.mktemp("bypass")))
    try:
        mesh.cp.start()
        mesh.cp.apply(PERMISSIVE + "---\n" + POLICIES)
        members = {
            name: run_service(mesh, name, app_args=("--log-requests",), run_args=args)
            for name, args in (("shop", ()), ("vault", ()), ("pipe", ("--protocol", "tcp")))
        }
        client = client_sidecar(mesh)
        world = World(mesh, members, client)
        # The policies hold through both listeners before the catalogue starts.
        for service, path in (("shop", "/admin"), ("vault", "/private")):
            for listener in ("outbound", "inbound"):
                wait_for(
                    lambda s=service, p=path, li=listener: send(world, s, li, p)[0] == 403,
                    20,
                    f"the {service} policy at the {listener} listener",
                )
        yield world
    finally:
        mesh.close()


# -- raw HTTP/1.1 ---------------------------------------------------------------------------


def address(world: World, service: str, listener: str) -> tuple[str, int]:
    hostport = world.client.outbound if listener == "outbound" else service_inbound(world, service)
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def service_inbound(world: World, service: str) -> str:
    return world.members[service].sidecar.inbound


def authority(world: World, service: str) -> str:
    return f"{service}:{world.members[service].port}"


def read_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """(status, body, bytes after the body) of one response with a Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"closed before a response head: {buf!r}")
        buf += piece
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    if status == 200 and head.startswith(b"HTTP/1.1 200 Connection established"):
        length = 0
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return status, rest[:length], rest[length:]


def send(world: World, service: str, listener: str, target: str) -> tuple[int, bytes]:
    """GET `target` (origin-form, or absolute-form when it starts with http://) with a raw
    socket, `Connection: close`; (status, body)."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority(world, service)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    with socket.create_connection(address(world, service, listener), timeout=IO_TIMEOUT) as s:
        s.sendall(request)
        status, body, _ = read_response(s)
    return status, body


def app_lines(world: World, service: str) -> list[str]:
    return [line for line in list(world.members[service].proc.all_lines) if line.startswith("REQ ")]


def arrived(world: World, service: str, marker: str) -> list[str]:
    """The app's log lines for the request marked `marker` (the marker ends its target)."""
    return [line for line in app_lines(world, service) if line.endswith(f"case={marker}")]


def wait_marker(world: World, service: str, listener: str, marker: str) -> None:
    """An allowed request by the same way, and its line in the app's log: every request
    answered before it that reached the app has been logged by then."""
    status, body = send(world, service, listener, f"/public/{marker}?case={marker}")
    assert status == 200, (status, body)
    wait_for(lambda: arrived(world, service, marker), 10, f"{service} to log {marker}")


# -- the catalogue ----------------------------------------------------------------------------

DENIED, REFUSED = 403, 400


@dataclass(frozen=True)
class Case:
    target: str  # as sent; `ABS` is replaced by `http://SERVICE:PORT`
    outcome: int | str  # DENIED, REFUSED, or the path (and query) the app must receive


SHOP = [
    Case("/admin", DENIED),
    Case("/admin/users", DENIED),
    Case("/x/../admin", DENIED),
    Case("/./admin", DENIED),
    Case("/%61dmin", DENIED),
    Case("/%61%64%6D%69%6e/users", DENIED),
    Case("/adm%69n", DENIED),
    Case("//admin", DENIED),
    Case("///admin//users", DENIED),
    Case("/\\admin", DENIED),
    Case("/x\\..\\admin\\users", DENIED),
    Case("/%2e/admin", DENIED),
    Case("/%2E%2E/admin", DENIED),
    Case("/x/%2e%2e/admin", DENIED),
    Case("/x/.%2E/admin", DENIED),
    Case("/%2e%2e/%2e%2e/admin/", DENIED),
    Case("/admin/.", DENIED),
    Case("/admin/x/..", DENIED),
    Case("/public/../admin", DENIED),
    Case("/a/b/../../../../admin", DENIED),
    Case("/x/./y/../../admin/users/", DENIED),
    Case("/admin?next=/public", DENIED),
    Case("ABS/x/../admin", DENIED),
    Case("ABS//admin/users", DENIED),
    Case("ABS/%61dmin", DENIED),
    Case("/admin;x=1", REFUSED),
    Case("/admin/;/users", REFUSED),
    Case("/public/..;/admin", REFUSED),
    Case("/admin%2Fusers", REFUSED),
    Case("/admin%2fusers", REFUSED),
    Case("/x%2F..%2Fadmin", REFUSED),
    Case("/x%5C..%5Cadmin", REFUSED),
    Case("/x%5c..%5cadmin", REFUSED),
    Case("/%zzadmin", REFUSED),
    Case("/admin%00", REFUSED),
    # What normalization leaves alone, as stated: case, trailing dots, `%3B`, the query.
    Case("/ADMIN", "/ADMIN"),
    Case("/%41dmin", "/Admin"),
    Case("/admin.", "/admin."),
    Case("/admin./users", "/admin./users"),
    Case("/admin%3bx=1", "/admin%3Bx=1"),
    Case("/public?to=/../admin", "/public?to=/../admin"),
    # Allowed requests arrive normalized.
    Case("/admin/../public", "/public"),
    Case("//public//x", "/public/x"),
    Case("/%70ublic/%7Ex", "/public/~x"),
]
VAULT = [
    Case("/public/x", "/public/x"),
    Case("/public/", "/public/"),
    Case("/public/./x", "/public/x"),
    Case("/public//x", "/public/x"),
    Case("/./public/x", "/public/x"),
    Case("/%70ublic/x", "/public/x"),
    Case("/public/x/../y", "/public/y"),
    Case("/public/x?y=/../admin", "/public/x?y=/../admin"),
    Case("ABS/public/a/./b", "/public/a/b"),
    Case("/admin", DENIED),
    Case("/public", DENIED),
    Case("/PUBLIC/x", DENIED),
    Case("/public./x", DENIED),
    Case("/public/../admin", DENIED),
    Case("/public/%2e%2e/admin", DENIED),
    Case("/public/.%2e/admin", DENIED),
    Case("/public/%2E%2E", DENIED),
    Case("/public/..", DENIED),
    Case("/public/x/%2e%2e/%2e%2e/admin", DENIED),
    Case("/public\\..\\admin", DENIED),
    Case("/public/x/..\\..\\admin", DENIED),
    Case("//public/../admin", DENIED),
    Case("/public//../admin", DENIED),
    Case("ABS/public/../admin", DENIED),
    Case("ABS/public/%2e%2e/admin", DENIED),
    Case("/public/..%2Fadmin", REFUSED),
    Case("/public%2F..%2Fadmin", REFUSED),
    Case("/public/%2E%2E%2fadmin", REFUSED),
    Case("/public/x%2F..%2F..%2Fadmin", REFUSED),
    Case("/public/x%5c..%5c..%5cadmin", REFUSED),
    Case("/public%5C..%5Cadmin", REFUSED),
    Case("/public/..;/admin", REFUSED),
    Case("/public;/../admin", REFUSED),
    Case("/public/x;y/../../admin", REFUSED),
    Case("/public/%zz", REFUSED),
]
CATALOGUE = {"shop": SHOP, "vault": VAULT}
LISTENERS = ("outbound", "inbound")


def marked(target: str, marker: str) -> str:
    return f"{target}{'&' if '?' in target else '?'}case={marker}"


@dataclass
class Result:
    status: int
    lines: list[str]  # the app's log lines for the case


@pytest.fixture(scope="module")
def results(world: World) -> dict[tuple[str, str, int], Result]:
    """Every case through both listeners, then what each app logged for each."""
    statuses: dict[tuple[str, str, int], tuple[int, str]] = {}
    for service, cases in CATALOGUE.items():
        base = f"http://{authority(world, service)}"
        for listener in LISTENERS:
            for i, case in enumerate(cases):
                marker = f"{service}-{listener}-{i}"
                target = (
                    case.target.replace("ABS", base)
                    if case.target.startswith("ABS")
                    else case.target
                )
                statuses[service, listener, i] = (
                    send(world, service, listener, marked(target, marker))[0],
                    marker,
                )
            wait_marker(world, service, listener, f"{service}-{listener}-end")
    out = {}
    for key, (status, marker) in statuses.items():
        lines = [
            line for line in app_lines(world, key[0]) if re.search(rf"case={marker}(\D|$)", line)
        ]
        out[key] = Result(status, lines)
    return out


@pytest.mark.parametrize(
    ("service", "listener", "index"),
    [(s, li, i) for s, cases in CATALOGUE.items() for li in LISTENERS for i in range(len(cases))],
    ids=[
        f"{s}-{li}-{c.target}" for s, cases in CATALOGUE.items() for li in LISTENERS for c in cases
    ],
)
def test_a_spelling_arrives_only_as_the_policy_allows(
    results: dict[tuple[str, str, int], Result], service: str, listener: str, index: int
) -> None:
    case = CATALOGUE[service][index]
    got = results[service, listener, index]
    if isinstance(case.outcome, int):
        assert got.status == case.outcome, (case, got)
        assert got.lines == [], f"{case.target} reached the app: {got.lines}"
    else:
        assert got.status == 200, (case, got)
        marker = f"{service}-{listener}-{index}"
        assert got.lines == [f"REQ GET {marked(case.outcome, marker)}"], (case, got)


def lenient_reading(target: str) -> str:
    """The path a lenient server would serve: `\\` for `/`, `;` parameters dropped, every
    segment percent-decoded (repeatedly), slashes merged, dot segments resolved."""
    path = target.split("?", 1)[0].replace("\\", "/")
    segments = [segment.split(";", 1)[0] for segment in path.split("/")]
    decoded = []
    for segment in segments:
        for _ in range(3):
            segment = unquote(segment)
        decoded.append(segment.replace("\\", "/"))
    joined = re.sub("/+", "/", "/" + "/".join(decoded))
    resolved = posixpath.normpath(joined)
    return resolved + ("/" if joined.endswith("/") and resolved != "/" else "")


def test_nothing_the_shop_app_received_reads_as_admin(
    results: dict[tuple[str, str, int], Result], world: World
) -> None:
    lines = app_lines(world, "shop")
    assert len(lines) >= len(LISTENERS) * sum(isinstance(c.outcome, str) for c in SHOP)
    for line in lines:
        path = lenient_reading(line.split(" ", 2)[2])
        assert path != "/admin" and not path.startswith("/admin/"), line


def test_everything_the_vault_app_received_reads_as_public(
    results: dict[tuple[str, str, int], Result], world: World
) -> None:
    lines = app_lines(world, "vault")
    assert len(lines) >= len(LISTENERS) * sum(isinstance(c.outcome, str) for c in VAULT)
    for line in lines:
        assert lenient_reading(line.split(" ", 2)[2]).startswith("/public/"), line


# -- CONNECT --------------------------------------------------------------------------------


def tunnel(world: World, service: str, listener: str, marker: str) -> tuple[int, bytes, int | None]:
    """CONNECT to the service's app port, with a request for `/admin` right behind it (an
    attacker does not wait for the answer); (CONNECT status, its body, the status of the
    inner request's answer or None when the tunnel was refused)."""
    port = world.members[service].port
    target = f"{service}:{port}" if listener == "outbound" else f"127.0.0.1:{port}"
    inner = f"GET /admin?case={marker} HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n"
    data = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n{inner}".encode()
    with socket.create_connection(address(world, service, listener), timeout=IO_TIMEOUT) as s:
        s.sendall(data)
        status, body, rest = read_response(s)
        if status != 200:
            return status, body, None
        while b"\r\n\r\n" not in rest:
            piece = s.recv(65536)
            if not piece:
                raise AssertionError(f"the tunnel closed before an answer: {rest!r}")
            rest += piece
        return status, body, int(rest.split(b" ", 2)[1])


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("service", sorted(CATALOGUE))
def test_connect_to_an_http_port_is_refused(world: World, service: str, listener: str) -> None:
    marker = f"connect-{service}-{listener}"
    status, body, inner = tunnel(world, service, listener, marker)
    # Straight at the inbound listener: its own refusal. Through the outbound one: the
    # peer sidecar's refusal, relayed as it was given (403).
    assert inner is None and status == 403, (status, body)
    assert b"speaks HTTP" in body or b"403" in body, body
    wait_marker(world, service, listener, f"{marker}-after")
    assert arrived(world, service, marker) == []


def test_tunnels_to_a_tcp_port_are_authorized_at_l4(world: World) -> None:
    mesh = world.mesh
    counter = iter(range(1000))

    def attempt(listener: str) -> tuple[int, int | None, list[str]]:
        marker = f"pipe-{listener}-{next(counter)}"
        status, _, inner = tunnel(world, "pipe", listener, marker)
        if inner is None:  # the marker goes the way every policy here allows
            wait_marker(world, "pipe", "outbound", f"{marker}-after")
        else:
            wait_for(lambda: arrived(world, "pipe", marker), 10, f"pipe to log {marker}")
        return status, inner, arrived(world, "pipe", marker)

    def through(listener: str) -> bool:
        """Whether a tunnel gets through, and then its request reached the app once."""
        status, inner, lines = attempt(listener)
        if inner is None:
            assert lines == [], lines
            return False
        assert (status, inner, len(lines)) == (200, 200, 1), (status, inner, lines)
        return True

    # No policy: a declared tcp port takes tunnels from anyone, mTLS or plaintext.
    assert through("outbound") and through("inbound")
    # A CONNECT must name the app port it ends at.
    with socket.create_connection(address(world, "pipe", "inbound"), timeout=IO_TIMEOUT) as s:
        s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        status, body, _ = read_response(s)
    assert status == 400 and b"not app port" in body, (status, body)

    # A DENY rule with an HTTP condition denies every tunnel (the path inside is unknown).
    mesh.cp.apply(pipe_policy("{to: [{operation: {paths: [/admin]}}]}", action="DENY"))
    wait_for(lambda: not through("outbound"), 20, "the DENY policy")
    assert not through("inbound")

    # An ALLOW rule on who calls allows the tunnel from that peer (mTLS) only.
    mesh.cp.apply(pipe_policy(f'{{from: [{{source: {{principals: ["{CLIENT_ID}"]}}}}]}}'))
    wait_for(lambda: through("outbound"), 20, "the ALLOW policy on the principal")
    assert not through("inbound")  # plaintext: no principal

    # An ALLOW rule that needs a path never matches a tunnel.
    mesh.cp.apply(pipe_policy("{to: [{operation: {paths: ['/public/*']}}]}"))
    wait_for(lambda: not through("outbound"), 20, "the ALLOW policy on paths")
    assert not through("inbound")

    mesh.cp.delete(pipe_policy("{}"))
    wait_for(lambda: through("outbound"), 20, "no policy again")
