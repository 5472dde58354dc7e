"""An in-process secure port on a free 127.0.0.1 port: real CA files and ca.db in tmp_path, the
real TLS front and grpc.aio servers, the real ADS server (over the small test world), plus the
plaintext ADS port; and grpcio clients that speak to it the way a proxy does."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from tests.control.ca.ca_support import make_csr
from tests.control.xds.ads_world import World, generate_from_world

from trellis.control.ca import pki
from trellis.control.ca.db import CaDb
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.issuer import CertificateAuthority, MeshSettings
from trellis.control.ca.secure_port import SecurePort
from trellis.control.ca.service import BUNDLE_METHOD, SIGN_METHOD
from trellis.control.ca.serving import ServingCertificate, names_for
from trellis.control.xds.server import AdsServer

TRUST_DOMAIN = "example.org"


class OffsetClock:
    """time.time() plus an offset tests can move forward (token expiry without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Svid:
    key: ec.EllipticCurvePrivateKey
    chain_pem: bytes
    answer: dict[str, Any]

    @property
    def key_pem(self) -> bytes:
        return pki.key_pem(self.key)

    @property
    def serial(self) -> str:
        return str(self.answer["serial"])


@dataclass
class Secure:
    ca: CertificateAuthority
    port: SecurePort
    ads: AdsServer
    address: str  # the secure port, 127.0.0.1:PORT
    plaintext: str  # the plaintext ADS port
    clock: OffsetClock
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def bundle(self) -> bytes:
        return self.ca.bundle_pem()

    def channel(
        self,
        svid: Svid | None = None,
        *,
        bundle: bytes | None = None,
        name: str | None = None,
    ) -> grpc.aio.Channel:
        """A TLS channel pinning `bundle` (default: the CA's now), with `svid` as client cert;
        `name` overrides the name checked against the serving certificate."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=bundle if bundle is not None else self.bundle,
            private_key=svid.key_pem if svid else None,
            certificate_chain=svid.chain_pem if svid else None,
        )
        options = [("grpc.ssl_target_name_override", name)] if name else []
        channel = grpc.aio.secure_channel(self.address, creds, options=options)
        self.channels.append(channel)
        return channel

    async def join(
        self, service_account: str, namespace: str = "default", **extra: Any
    ) -> tuple[Svid, str]:
        """A new token for the identity, and the SVID it gets: (svid, token id)."""
        created = self.ca.create_token(service_account, namespace, 3600)
        svid = await sign(self.channel(), token=created.token, **extra)
        return svid, created.record.id


async def call(channel: grpc.aio.Channel, method: str, body: Any, timeout: float = 10) -> Any:
    raw = await channel.unary_unary(method)(
        body if isinstance(body, bytes) else json.dumps(body).encode(), timeout=timeout
    )
    return json.loads(raw)


async def sign(
    channel: grpc.aio.Channel, key: ec.EllipticCurvePrivateKey | None = None, **body: Any
) -> Svid:
    """Sign a fresh CSR (or one for `key`) with `body`'s fields; raises AioRpcError."""
    made_key, csr = make_csr(key)
    assert isinstance(made_key, ec.EllipticCurvePrivateKey)
    answer = await call(channel, SIGN_METHOD, {"csr": csr.decode(), **body})
    return Svid(made_key, answer["certificate"].encode(), answer)


async def bundle(channel: grpc.aio.Channel) -> str:
    return str((await call(channel, BUNDLE_METHOD, {}))["bundle"])


@asynccontextmanager
async def secure_world(
    tmp_path: Path,
    world: World | None = None,
    *,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    ttl: float = 3600,
    generate: Any = generate_from_world,
) -> AsyncIterator[Secure]:
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, ca_cert, ca_key, pki.utcnow())
    db = CaDb(tmp_path / "ca.db")
    clock = OffsetClock()

    async def settings() -> MeshSettings:
        return MeshSettings(TRUST_DOMAIN, dt.timedelta(seconds=ttl))

    ca = CertificateAuthority(authority, files, db, settings, clock=clock)
    ads = AdsServer(generate, world if world is not None else World(1))  # type: ignore[arg-type]
    port = SecurePort(ca, ServingCertificate(files, names_for("127.0.0.1")), register=ads.register)
    plaintext_server = grpc.aio.server()
    ads.register(plaintext_server)
    plaintext_port = plaintext_server.add_insecure_port("127.0.0.1:0")
    secure: Secure | None = None
    try:
        await plaintext_server.start()
        secure_port = await port.start("127.0.0.1", 0)
        secure = Secure(
            ca, port, ads, f"127.0.0.1:{secure_port}", f"127.0.0.1:{plaintext_port}", clock
        )
        yield secure
    finally:
        if secure is not None:
            for channel in secure.channels:
                await channel.close()
        await port.aclose(None)
        await plaintext_server.stop(None)
        db.close()
