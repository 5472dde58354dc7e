"""A real `trellis control` under requests it must refuse, watched from outside.

The REST API: a body without the admin token is answered 401 before it is read; a body
over the limit 413, whether it says its length or streams (chunked); JSON nested too
deep 400 with the reason. Memory is read from /proc/PID/status of the control plane:
its peak RSS is reset (`clear_refs` 5) before each request, so `VmHWM` afterwards is
the highest it went while answering; the bound is a margin well under the body's size.
The gRPC ports: an oversized message to the CA service (secure port) and to ADS
(plaintext port) gets RESOURCE_EXHAUSTED, and the same server answers the next call.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from tests.cli.control_plane import TOKEN, ControlPlane
from tests.proxy.xds.control_plane import sidecar_node

from trellis.control.ca.service import BUNDLE_METHOD, SIGN_METHOD
from trellis.control.limits import (
    API_MAX_BODY_BYTES,
    CA_MAX_REQUEST_BYTES,
    MAX_JSON_DEPTH,
    XDS_MAX_REQUEST_BYTES,
    MiB,
)
from trellis.proxy.xds import LISTENER_TYPE

pytestmark = pytest.mark.integration

KiB = 1024
DOCUMENT = b'{"apiVersion":"trellis.dev/v1alpha1","kind":"Service","metadata":{"name":"s"}},'


# -- the control plane's memory ---------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


@dataclass
class Memory:
    """The process's RSS now; `grown_kib()`: how far its peak rose above it since."""

    pid: int
    before_kib: int = 0

    def __post_init__(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # peak RSS := RSS now
        self.before_kib = _status_kib(self.pid, "VmRSS")

    def grown_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM") - self.before_kib


# -- raw HTTP: the head, then the body from a thread while the answer is read ------------------


@dataclass
class ApplyBody:
    """A valid `POST /api/v1/apply` JSON body of about `size` bytes, made as it is sent."""

    size: int
    chunk: bytes = field(init=False)
    count: int = field(init=False)

    def __post_init__(self) -> None:
        self.chunk = DOCUMENT * (64 * KiB // len(DOCUMENT))
        self.count = max(1, self.size // len(self.chunk))

    @property
    def length(self) -> int:
        return len(b'{"documents":[') + self.count * len(self.chunk) + len(b"{}]}")

    def parts(self) -> Iterator[bytes]:
        yield b'{"documents":['
        for _ in range(self.count):
            yield self.chunk
        yield b"{}]}"


def chunked(parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server let us send before it answered (or all of them)

    @property
    def error(self) -> str:
        return str(json.loads(self.body)["error"])


def exchange(
    url: str,
    path: str,
    headers: dict[str, str],
    body: Iterator[bytes],
    method: str = "POST",
) -> Answer:
    """Send the head, stream `body` from a thread, read the answer: the server may answer
    (and close) before the body ends, as a guard that refuses it unread does."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sent = [0]

    def send_body() -> None:
        try:
            for part in body:
                sock.sendall(part)
                sent[0] += len(part)
        except OSError:  # the server answered and closed: that is the point
            pass

    try:
        sock.sendall(head.encode())
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data, 0)
        if answer.headers.get("connection") == "close":
            with contextlib.suppress(OSError):  # (reset already, when the body was cut off)
                sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
        answer.sent = sent[0]
        return answer
    finally:
        sock.close()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def still_serving(cp: ControlPlane) -> None:
    assert httpx.get(f"{cp.api_url}/healthz", timeout=10).json()["status"] == "ok"


# -- the REST API -----------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_large_body_without_the_token_is_refused_before_it_is_read(
    cp: ControlPlane, framing: str
) -> None:
    body = ApplyBody(40 * MiB)
    memory = Memory(cp.pid)
    if framing == "chunked":
        headers, parts = {"Transfer-Encoding": "chunked"}, chunked(body.parts())
    else:
        headers, parts = {"Content-Length": str(body.length)}, body.parts()
    answer = exchange(cp.api_url, "/api/v1/apply", headers, parts)
    assert answer.status == 401, answer.body
    assert answer.error.startswith("missing admin token: writes need the admin token")
    # Nothing like the 40 MB body (nor its parse) ever lived in the control plane.
    assert memory.grown_kib() < 8 * KiB, f"grew {memory.grown_kib()} KiB answering 401"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"
    assert answer.sent < body.length
    still_serving(cp)


def test_a_body_with_a_wrong_token_is_refused_before_it_is_read(cp: ControlPlane) -> None:
    body = ApplyBody(40 * MiB)
    memory = Memory(cp.pid)
    answer = exchange(
        cp.api_url,
        "/api/v1/apply",
        {**auth("not-the-token"), "Content-Length": str(body.length)},
        body.parts(),
    )
    assert answer.status == 401
    assert answer.error.startswith("invalid admin token")
    assert memory.grown_kib() < 8 * KiB
    still_serving(cp)


def test_an_authenticated_body_over_the_limit_is_refused_by_its_length(
    cp: ControlPlane,
) -> None:
    body = ApplyBody(API_MAX_BODY_BYTES + MiB)
    assert body.length > API_MAX_BODY_BYTES
    memory = Memory(cp.pid)
    answer = exchange(
        cp.api_url, "/api/v1/apply", {**auth(), "Content-Length": str(body.length)}, body.parts()
    )
    assert memory.grown_kib() < 8 * KiB, f"grew {memory.grown_kib()} KiB answering 413"
    assert answer.status == 413, answer.body
    assert json.loads(answer.body) == {
        "error": f"the request body is {body.length} bytes; the API accepts at most "
        f"16 MiB ({API_MAX_BODY_BYTES} bytes)",
        "limit": API_MAX_BODY_BYTES,
    }
    assert answer.headers["connection"] == "close"
    still_serving(cp)


def test_an_authenticated_chunked_body_is_cut_off_at_the_limit(cp: ControlPlane) -> None:
    body = ApplyBody(4 * API_MAX_BODY_BYTES)
    memory = Memory(cp.pid)
    answer = exchange(
        cp.api_url,
        "/api/v1/apply",
        {**auth(), "Transfer-Encoding": "chunked"},
        chunked(body.parts()),
    )
    # It holds the limit's worth while counting, never the 64 MiB sent at it.
    limit_kib = API_MAX_BODY_BYTES // KiB
    assert memory.grown_kib() < limit_kib + 8 * KiB, f"grew {memory.grown_kib()} KiB"
    assert answer.status == 413, answer.body
    assert answer.error == (
        f"the request body goes on; the API accepts at most 16 MiB ({API_MAX_BODY_BYTES} bytes)"
    )
    assert answer.headers["connection"] == "close"
    assert answer.sent < body.length
    still_serving(cp)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 10, 100_000])
def test_deeply_nested_json_gets_400_with_the_reason(cp: ControlPlane, depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    body = b'{"documents": [{"kind": "Service", "spec": {"x": %s}}]}' % nested
    answer = exchange(
        cp.api_url,
        "/api/v1/apply",
        {**auth(), "Content-Length": str(len(body))},
        iter([body]),
    )
    assert answer.status == 400, answer.body
    assert json.loads(answer.body) == {
        "error": f"invalid request: JSON nested {depth + 4} levels deep; "
        f"at most {MAX_JSON_DEPTH} are accepted",
        "limit": MAX_JSON_DEPTH,
    }
    still_serving(cp)


# -- the gRPC ports ---------------------------------------------------------------------------


def _secure_channel(cp: ControlPlane) -> grpc.Channel:
    roots = httpx.get(f"{cp.api_url}/api/v1/ca/bundle", timeout=10).content
    return grpc.secure_channel(
        cp.secure_address,
        grpc.ssl_channel_credentials(root_certificates=roots),
        options=[("grpc.ssl_target_name_override", "trellis-control")],
    )


def test_the_ca_service_refuses_oversized_and_deep_requests_and_keeps_serving(
    cp: ControlPlane,
) -> None:
    with _secure_channel(cp) as channel:
        sign = channel.unary_unary(SIGN_METHOD)
        over_ours = b'{"csr": "%s"}' % (b"A" * CA_MAX_REQUEST_BYTES)
        with pytest.raises(grpc.RpcError) as refused:
            sign(over_ours, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            f"the request is {len(over_ours)} bytes; the CA accepts at most 64 KiB (65536 bytes)"
        )
        # Past the server's receive limit gRPC refuses it before our code sees it.
        with pytest.raises(grpc.RpcError) as refused:
            sign(b" " * (XDS_MAX_REQUEST_BYTES + 1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as refused:
            sign(b"[" * 20_000 + b"]" * 20_000, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == (
            f"JSON nested 20000 levels deep; at most {MAX_JSON_DEPTH} are accepted"
        )
        answer = json.loads(channel.unary_unary(BUNDLE_METHOD)(b"{}", timeout=10))
        assert answer["bundle"].startswith("-----BEGIN CERTIFICATE-----")


def _discovery(names: list[str]) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(
        node=sidecar_node(), type_url=LISTENER_TYPE, resource_names=names
    )


def test_ads_refuses_an_oversized_request_and_keeps_serving(cp: ControlPlane) -> None:
    names = [f"service-{i:07d}.namespace.svc.mesh:8080" for i in range(120_000)]
    big = _discovery(names)
    assert big.ByteSize() > XDS_MAX_REQUEST_BYTES
    with grpc.insecure_channel(cp.xds_address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.StreamAggregatedResources(iter([big]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(XDS_MAX_REQUEST_BYTES) in (refused.value.details() or "")
        # A subscription of an ordinary size is answered (here: the name is unknown).
        response = next(stub.StreamAggregatedResources(iter([_discovery(["x:80"])]), timeout=10))
        assert response.type_url == LISTENER_TYPE


def test_ads_reads_no_further_ahead_of_a_client_that_never_reads(cp: ControlPlane) -> None:
    # Each request is answered (NOT_FOUND for 30,000 names); the client reads none of it,
    # so the server's writes wait, and so must its reads: HTTP/2 flow control then holds
    # the client. Unbounded, the control plane queued every request (1.2 GB for 600).
    names = [f"service-{i:06d}.namespace.svc.mesh:80" for i in range(30_000)]
    total = 400
    consumed = [0]

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        first = _discovery(names)
        for version in range(total):
            yield (
                first
                if version == 0
                else discovery_pb2.DiscoveryRequest(
                    type_url=LISTENER_TYPE, resource_names=names, version_info=str(version)
                )
            )
            consumed[0] += 1

    size_kib = _discovery(names).ByteSize() // KiB
    memory = Memory(cp.pid)
    with grpc.insecure_channel(cp.xds_address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(requests())
        try:
            # Until gRPC stops taking requests from us (the server stopped reading), or all
            # were taken (it did not stop).
            deadline = time.monotonic() + 60
            last, still_since = -1, time.monotonic()
            while consumed[0] < total and time.monotonic() < deadline:
                if consumed[0] != last:
                    last, still_since = consumed[0], time.monotonic()
                elif time.monotonic() - still_since > 3:
                    break
                time.sleep(0.05)
            assert consumed[0] < total, "the server read every request"
            # A few requests and the answer waiting to be written, not the 440 MB sent at it.
            grown = memory.grown_kib()
            assert grown < 100 * KiB, f"grew {grown} KiB ({consumed[0]} of {size_kib} KiB taken)"
        finally:
            call.cancel()
        response = next(stub.StreamAggregatedResources(iter([_discovery(["x:80"])]), timeout=10))
        assert response.type_url == LISTENER_TYPE
