"""The secure port put together: TLS front → internal gRPC server (CA service + guarded ADS).

`SecurePort.start(host, port)`:
  1. issue (or reuse) the serving certificate and build its SSL context;
  2. start an internal grpc.aio server on 127.0.0.1 (a free port) with the CA
     service and whatever `register` adds (the ADS service, with the
     certificate binding as its guard);
  3. start the TLS front on the public address, forwarding to it;
  4. keep the serving certificate fresh: on every CA change (rotation) and
     every `refresh_interval` seconds.
`aclose(grace)`: stop the refresher, stop gRPC with `grace` (streams end with
GOAWAY through the front), then close the front and its connections.
A port that cannot be bound raises OSError (nothing is left running).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from trellis.control.ca.binding import CertificateBinding
from trellis.control.ca.front import TlsFront
from trellis.control.ca.issuer import CertificateAuthority
from trellis.control.ca.peers import PeerTable
from trellis.control.ca.service import CertificatesService
from trellis.control.ca.serving import ServingCertificate
from trellis.control.xds.server import StreamGuard

log = logging.getLogger("trellis.ca")

REFRESH_INTERVAL = 600.0
RegisterFn = Callable[[grpc.aio.Server, StreamGuard], None]


class SecurePort:
    def __init__(
        self,
        ca: CertificateAuthority,
        serving: ServingCertificate,
        register: RegisterFn | None = None,
        grpc_options: Sequence[tuple[str, Any]] = (),
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.ca = ca
        self.serving = serving
        self.peers = PeerTable()
        self._register = register
        self._grpc_options = list(grpc_options)
        self._refresh_interval = refresh_interval
        self._grpc: grpc.aio.Server | None = None
        self._front: TlsFront | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: a free port); returns the port."""
        self.serving.refresh(self.ca.authority)
        self.ca.subscribe(self._on_ca_change)
        self._grpc = grpc.aio.server(options=[*self._grpc_options, ("grpc.so_reuseport", 0)])
        CertificatesService(self.ca, self.peers).register(self._grpc)
        if self._register is not None:
            self._register(self._grpc, CertificateBinding(self.peers, self.ca.record_node))
        internal = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()
        self._front = TlsFront(self.serving.ssl_context, internal, self.peers)
        try:
            self.port = await self._front.start(host, port)
        except OSError as e:
            await self.aclose(None)
            raise OSError(f"cannot listen for the secure port on {host}:{port}: {e}") from None
        self._refresher = asyncio.create_task(self._refresh_forever(), name="serving-cert")
        return self.port

    def _on_ca_change(self, authority: Any) -> None:
        self.serving.refresh(authority)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            try:
                self.serving.refresh(self.ca.authority)
            except Exception:
                log.exception("serving certificate refresh failed; will retry")

    def statistics(self) -> dict[str, int]:
        front = self._front.statistics() if self._front is not None else {}
        return {**front, **self.ca.statistics()}

    async def aclose(self, grace: float | None = 2.0) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._front is not None:
            await self._front.aclose()
