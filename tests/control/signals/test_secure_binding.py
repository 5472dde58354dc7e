"""The telemetry stream on a real secure port (real CA, TLS front, grpc.aio): a mesh SVID
is needed, and the Hello must name the certificate's namespace."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import pytest
from tests.control.ca.secure_world import OffsetClock, Secure, sign
from tests.control.xds.ads_world import World, generate_from_world

from trellis.control.ca import pki
from trellis.control.ca.db import CaDb
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.issuer import CertificateAuthority, MeshSettings
from trellis.control.ca.secure_port import SecurePort
from trellis.control.ca.serving import ServingCertificate, names_for
from trellis.control.server import mesh_members
from trellis.control.signals.stream import (
    STREAM_METHOD,
    TelemetryHub,
    TelemetryService,
    certificate_binding,
)
from trellis.control.xds.server import AdsServer, StreamGuard
from trellis.telemetry_api import telemetry_pb2 as pb


def hello(namespace: str, service_ns: str | None = None) -> pb.ProxyMessage:
    ns = service_ns or namespace
    return pb.ProxyMessage(
        hello=pb.Hello(
            node_id=f"sidecar~web-1.{namespace}",
            workload="web-1",
            namespace=namespace,
            service=f"web.{ns}",
        )
    )


async def open_stream(
    channel: grpc.aio.Channel, first: pb.ProxyMessage
) -> grpc.aio.StreamStreamCall:
    call = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=pb.ProxyMessage.SerializeToString,
        response_deserializer=pb.ControlMessage.FromString,
    )(timeout=10)
    await call.write(first)
    return call


async def test_the_hello_must_match_the_certificate(tmp_path: Path) -> None:
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, None, None, pki.utcnow())
    db = CaDb(tmp_path / "ca.db")

    async def settings() -> MeshSettings:
        return MeshSettings("example.org", dt.timedelta(hours=1))

    ca = CertificateAuthority(authority, files, db, settings, clock=OffsetClock())
    hub = TelemetryHub()
    ads = AdsServer(generate_from_world, World(1))  # type: ignore[arg-type]

    def register(server: grpc.aio.Server, guard: StreamGuard) -> None:
        ads.register(server, guard)
        TelemetryService(
            hub, admit=mesh_members(guard, "telemetry"), bind=certificate_binding(guard),
            secure=True,
        ).register(server)  # fmt: skip

    port = SecurePort(ca, ServingCertificate(files, names_for("127.0.0.1")), register=register)
    try:
        address = f"127.0.0.1:{await port.start('127.0.0.1', 0)}"
        secure = Secure(ca, port, ads, address, "", OffsetClock())
        created = ca.create_token("web", "default", 3600)
        svid = await sign(secure.channel(), token=created.token)
        channel = secure.channel(svid)
        # Another namespace than the certificate's: refused.
        for wrong in (hello("other"), hello("default", service_ns="other")):
            call = await open_stream(channel, wrong)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "does not match its certificate" in str(caught.value.details())
        assert hub.counters["streamsRefused"] == 2
        # The certificate's namespace: connected.
        call = await open_stream(channel, hello("default"))
        for _ in range(100):
            if hub.connections():
                break
            await asyncio.sleep(0.05)
        assert [c.secure for c in hub.connections()] == [True]
        call.cancel()
        # No client certificate: refused before the Hello is read.
        call = await open_stream(secure.channel(), hello("default"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for ch in secure.channels:
            await ch.close()
    finally:
        await port.aclose(None)
        db.close()
