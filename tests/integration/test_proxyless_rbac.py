"""A proxyless grpcio server enforces AuthorizationPolicies from `trellis control` (gRFC A41).

A real control plane; a real `grpc.server(..., xds=True)` process (plaintext:
insecure server credentials, so the rules used here do not depend on
principals) whose bootstrap names the control plane; a plain grpcio client
calling it directly. Policies are applied through the REST API while the
server runs: its inbound listener (A36) gets the RBAC filters and grpcio
answers PERMISSION_DENIED for what they deny.

Only registered methods are called: grpcio 1.85.3's xDS server aborts
(`pipe.h:85 Check failed: has_value()`) on a call to an unknown method.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from tests.integration.harness import Mesh, Proc, free_port, wait_for
from trellis.run.bootstrap import bootstrap_json

SERVER = r"""
import sys, grpc
from concurrent import futures
from grpc_health.v1 import health, health_pb2_grpc

def echo(request, context):
    return request

server = grpc.server(futures.ThreadPoolExecutor(4), xds=True)
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler(
        "trellis.test.Echo",
        {"Say": grpc.unary_unary_rpc_method_handler(echo),
         "Admin": grpc.unary_unary_rpc_method_handler(echo)}),
    grpc.method_handlers_generic_handler(
        "trellis.test.Other", {"Call": grpc.unary_unary_rpc_method_handler(echo)}),
))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
server.start()
print("STARTED", flush=True)
server.wait_for_termination()
"""

DENY = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin-and-blocked}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
    - to: [{operation: {paths: [/trellis.test.Echo/Admin]}}]
    - when: [{key: "request.headers[x-block]", values: ["yes"]}]
"""
ALLOW = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-echo-and-health}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
    - to: [{operation: {paths: [/trellis.test.Echo/*, /grpc.health.v1.Health/*], methods: [POST]}}]
"""
DRY_RUN_DENY_ALL = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: dry-run-deny-all}
spec: {action: DENY, dryRun: true, rules: [{}]}
"""
OTHER_WORKLOAD = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-all-of-another-app}
spec: {selector: {matchLabels: {app: other}}, action: DENY, rules: [{}]}
"""

OK = "OK"
DENIED = grpc.StatusCode.PERMISSION_DENIED.name


@pytest.fixture
def server(mesh: Mesh, tmp_path: Path) -> Iterator[int]:
    """A proxyless echo server (labels app=echo) on a free port; yields the port."""
    port = free_port()
    bootstrap = tmp_path / "bootstrap-echo.json"
    bootstrap.write_text(
        bootstrap_json(
            control_planes=[mesh.cp.xds],
            workload="echo-a",
            labels={"app": "echo"},
            ports=[port],
        )
    )
    env = {"GRPC_XDS_BOOTSTRAP": str(bootstrap), "grpc_proxy": "", "GRPC_VERBOSITY": "ERROR"}
    proc = Proc([sys.executable, "-c", SERVER, str(port)], env=env, name="xds echo server")
    mesh.procs.append(proc)
    proc.wait_line(lambda line: line == "STARTED", 20)
    yield port


@pytest.fixture
def channel(server: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        f"127.0.0.1:{server}", options=[("grpc.enable_http_proxy", 0)]
    ) as ch:
        yield ch


def call(channel: grpc.Channel, method: str, metadata: Sequence[tuple[str, str]] = ()) -> str:
    """The status of one unary call (raw bytes in and out): "OK" or the code's name."""
    try:
        channel.unary_unary(method)(b"hi", metadata=tuple(metadata), timeout=5)
    except grpc.RpcError as e:
        return str(e.code().name)
    return OK


def statuses(channel: grpc.Channel) -> dict[str, str]:
    return {
        "say": call(channel, "/trellis.test.Echo/Say"),
        "admin": call(channel, "/trellis.test.Echo/Admin"),
        "blocked": call(channel, "/trellis.test.Echo/Say", [("x-block", "yes")]),
        "not-blocked": call(channel, "/trellis.test.Echo/Say", [("x-block", "no")]),
        "other": call(channel, "/trellis.test.Other/Call"),
    }


def wait_statuses(channel: grpc.Channel, expected: dict[str, str], what: str) -> None:
    """Poll until every call answers as expected (the server applies pushes asynchronously)."""
    last: dict[str, str] = {}

    def settled() -> bool:
        last.clear()
        last.update(statuses(channel))
        return last == expected

    try:
        wait_for(settled, 30, what, interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last statuses: {last}") from None


def test_proxyless_server_denies_what_policies_deny(mesh: Mesh, channel: grpc.Channel) -> None:
    # No policy: everything reaches the app.
    open_ = {"say": OK, "admin": OK, "blocked": OK, "not-blocked": OK, "other": OK}
    wait_statuses(channel, open_, "the server to serve its first listener")

    # DENY by path and by header: grpcio answers PERMISSION_DENIED for what it matches.
    mesh.cp.apply(DENY)
    denying = {**open_, "admin": DENIED, "blocked": DENIED}
    wait_statuses(channel, denying, "the DENY policy to be enforced")

    # An ALLOW policy: what it does not allow is denied too; DENY still wins over it.
    mesh.cp.apply(ALLOW)
    wait_statuses(channel, {**denying, "other": DENIED}, "the ALLOW policy to be enforced")

    # Dry-run policies and policies of other workloads change nothing here; deleting the
    # DENY policy lifts its denials (that state comes from a snapshot holding all three).
    mesh.cp.apply(DRY_RUN_DENY_ALL)
    mesh.cp.apply(OTHER_WORKLOAD)
    mesh.cp.delete(DENY)
    wait_statuses(channel, {**open_, "other": DENIED}, "the DENY policy to be lifted")


def test_an_empty_allow_policy_denies_everything(mesh: Mesh, channel: grpc.Channel) -> None:
    wait_statuses(
        channel,
        {"say": OK, "admin": OK, "blocked": OK, "not-blocked": OK, "other": OK},
        "the server to serve its first listener",
    )
    mesh.cp.apply("""
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {selector: {matchLabels: {app: echo}}}
""")
    everything_denied = dict.fromkeys(("say", "admin", "blocked", "not-blocked", "other"), DENIED)
    wait_statuses(channel, everything_denied, "the empty ALLOW policy to deny everything")
