"""`trellis control`: the composition root that wires the control plane on one event loop.

Start: data dir (0700) → the CA (files under ca/, ca.db) → SqliteStore → the trace
store and its OTLP receiver → ADS and OTLP's TraceService on a plaintext grpc.aio
server → the secure port (TLS front → CA service + the same ADS, bound to client
certificates, + TraceService for mesh members) → admin token → Registry →
PushController (store → PushContext → ads.push) → the REST API on uvicorn (with
OTLP/HTTP and the trace queries). The banner's lines
come in a fixed order (tests and tools parse them): API, xDS, [admin token, CLI
config on first start], secure port, dashboard. We own SIGINT/SIGTERM (uvicorn's handlers
are turned off) and shut down in steps:
  1. stop the API: stop accepting, let in-flight requests finish (bounded);
  2. stop gRPC (both ports) with a grace period, so streams end cleanly and
     proxies reconnect; then close the secure port's TLS connections;
  3. stop the push controller and the registry's sweeper;
  4. close the store and ca.db.
A CA that cannot start (bad --ca-cert, damaged ca/ files) raises CaSetupError.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys
from typing import TextIO

import grpc

from trellis.cli.config_file import CliConfig, write_config
from trellis.control.api import ApiState, TokenSetup, create_app, load_or_create
from trellis.control.api.serving import ApiServer, api_config, listen_tcp
from trellis.control.ca import pki
from trellis.control.ca.db import CaDb
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.issuer import CertificateAuthority, MeshSettings
from trellis.control.ca.secure_port import SecurePort
from trellis.control.ca.serving import ServingCertificate, names_for
from trellis.control.config import ControlConfig, HostPort
from trellis.control.limits import XDS_MAX_REQUEST_BYTES
from trellis.control.metrics import scrape_token
from trellis.control.push.controller import PushController
from trellis.control.registry import Registry
from trellis.control.signals.stream import TelemetryHub, TelemetryService, certificate_binding
from trellis.control.traces.export import OtlpReceiver
from trellis.control.traces.receiver import Admit as TraceAdmit
from trellis.control.traces.receiver import TraceService
from trellis.control.traces.store import TraceStore
from trellis.control.xds.server import AdsServer, StreamGuard, StreamRefused
from trellis.keepalive import SERVER, ServerPingPolicy
from trellis.model.duration import parse_duration
from trellis.model.keys import ResourceKey
from trellis.model.mesh_config import MESH_CONFIG_NAME, MeshConfig
from trellis.store.base import Store
from trellis.store.sqlite import SqliteStore

log = logging.getLogger("trellis.control")

API_GRACE_SECONDS = 5
GRPC_GRACE_SECONDS = 2.0


def grpc_server_options(keepalive: ServerPingPolicy = SERVER) -> list[tuple[str, int]]:
    """Options of both gRPC servers (the plaintext xDS port and the secure port's)."""
    return [
        # No SO_REUSEPORT: a second control plane on the same port must fail, not share it.
        ("grpc.so_reuseport", 0),
        # Which pings of xDS clients are welcome (trellis.keepalive has both sides' numbers).
        *keepalive.grpc_options(),
        # The largest request a client may send (ADS; the CA service bounds its own lower).
        ("grpc.max_receive_message_length", XDS_MAX_REQUEST_BYTES),
    ]


def client_url(address: HostPort) -> str:
    """The URL a local client uses to reach a server listening on `address`."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    return f"http://{HostPort(host, address.port)}"


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


async def serve(config: ControlConfig, *, out: TextIO = sys.stdout) -> None:
    """Run the control plane until SIGINT/SIGTERM (or until the API server fails)."""
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    try:
        api_sock = listen_tcp(config.api)
    except OSError as e:
        raise OSError(f"cannot listen for the API on {config.api}: {e.strerror or e}") from None
    api_address = HostPort(config.api.host, api_sock.getsockname()[1])
    try:
        ca_files = CaFiles(config.ca_dir)
        authority, ca_note = open_authority(ca_files, config.ca_cert, config.ca_key, pki.utcnow())
        ca_db = CaDb(config.ca_db)
    except BaseException:
        api_sock.close()
        raise
    log.info("%s", ca_note)
    store = SqliteStore(config.state_db)
    ca = CertificateAuthority(authority, ca_files, ca_db, settings=lambda: mesh_settings(store))
    grpc_options = grpc_server_options(config.keepalive)
    grpc_server = grpc.aio.server(options=grpc_options)
    ads = AdsServer()
    traces = OtlpReceiver(TraceStore(config.trace_store_bytes))
    telemetry = TelemetryHub()

    def register_secure(server: grpc.aio.Server, guard: StreamGuard) -> None:
        ads.register(server, guard)
        TraceService(traces, admit=mesh_members(guard)).register(server)
        TelemetryService(
            telemetry,
            admit=mesh_members(guard, "telemetry"),
            bind=certificate_binding(guard),
            secure=True,
        ).register(server)

    secure = SecurePort(
        ca,
        ServingCertificate(ca_files, names_for(config.secure.host, config.secure_sans)),
        register=register_secure,
        grpc_options=grpc_options,
    )
    try:
        ads.register(grpc_server)
        TraceService(traces).register(grpc_server)
        TelemetryService(telemetry).register(grpc_server)
        try:
            xds_port = grpc_server.add_insecure_port(str(config.xds))
        except RuntimeError as e:
            raise OSError(f"cannot listen for xDS on {config.xds}: {e}") from None
        if xds_port == 0:
            raise OSError(f"cannot listen for xDS on {config.xds}")
        await grpc_server.start()
        secure_port = await secure.start(config.secure.host, config.secure.port)
        secure_address = HostPort(config.secure.host, secure_port)
        # Only once both ports are ours: a first start that fails must not swallow the token.
        tokens = _admin_token(config)
        scrape = scrape_token.load_or_create(
            config.data_dir, os.environ.get("TRELLIS_SCRAPE_TOKEN") or None
        )
        async with (
            Registry(store, sweep_interval=config.sweep_interval) as registry,
            PushController(store, on_push=ads.push) as push,
        ):
            xds_local = client_url(HostPort(config.xds.host, xds_port)).removeprefix("http://")
            secure_local = client_url(secure_address).removeprefix("http://")
            app = create_app(
                ApiState(
                    store,
                    registry,
                    ads,
                    tokens.verifier,
                    push,
                    xds_address=xds_local,
                    scrape_token=scrape,
                    ca=ca,
                    secure_address=secure_local,
                    traces=traces,
                    telemetry=telemetry,
                )
            )
            uv_config = api_config(
                app,
                log_level=config.log_level,
                access_log=config.log_level == "debug",
                timeout_graceful_shutdown=API_GRACE_SECONDS,
            )
            api = ApiServer(uv_config)
            api_task = asyncio.create_task(api.serve(sockets=[api_sock]), name="api")
            _say(out, f"API listening on http://{api_address}")
            _say(out, f"xDS listening on {HostPort(config.xds.host, xds_port)}")
            if tokens.new_token is not None:
                _say(out, f"admin token: {tokens.new_token}")
                written = write_config(CliConfig(client_url(api_address), tokens.new_token))
                _say(out, f"CLI config written to {written} (mode 0600)")
            _say(out, f"secure listening on {secure_address}")
            _say(out, f"dashboard on {client_url(api_address)}/ui/ (log in with the admin token)")
            await _wait_for_stop(api_task)
            # 1. stop accepting API connections, finish in-flight requests (bounded)
            api.should_exit = True
            await api_task
            # 2. end xDS streams with a grace period (both ports), then the TLS connections
            await asyncio.gather(
                grpc_server.stop(GRPC_GRACE_SECONDS), secure.aclose(GRPC_GRACE_SECONDS)
            )
            # 3. leaving the `async with` stops the push controller and the sweeper
    finally:
        await grpc_server.stop(None)
        await secure.aclose(None)
        api_sock.close()
        # 4. close the stores last: everything above may still write to them
        await store.aclose()
        ca_db.close()
    log.info("control plane stopped")


def mesh_members(guard: StreamGuard, what: str = "trace export") -> TraceAdmit:
    """Trace export (or the telemetry stream) on the secure port: callers the xDS guard would
    admit (a mesh certificate)."""

    def admit(context: grpc.aio.ServicerContext) -> tuple[grpc.StatusCode, str] | None:
        try:
            guard.admit(context)
        except StreamRefused as e:
            return (
                e.code,
                f"{what} on the secure port needs a mesh client certificate (the plaintext "
                f"xDS port takes it without one): {e.message}",
            )
        return None

    return admit


async def mesh_settings(store: Store) -> MeshSettings:
    """The CA's view of the MeshConfig: trust domain and workload certificate TTL."""
    doc = await store.get(ResourceKey("MeshConfig", "", MESH_CONFIG_NAME))
    mesh = doc if isinstance(doc, MeshConfig) else MeshConfig()
    ttl = dt.timedelta(seconds=parse_duration(mesh.spec.certificate_ttl))
    return MeshSettings(trust_domain=mesh.spec.trust_domain, certificate_ttl=ttl)


def _admin_token(config: ControlConfig) -> TokenSetup:
    preset = os.environ.get("TRELLIS_TOKEN") or None
    tokens = load_or_create(config.data_dir, preset)
    if preset and tokens.new_token is None and not tokens.verifier.verify(preset):
        log.warning(
            "TRELLIS_TOKEN differs from the admin token stored in %s; the stored one stays "
            "(delete that file and restart to set a new one)",
            config.data_dir,
        )
    return tokens


async def _wait_for_stop(api_task: asyncio.Task[None]) -> None:
    """Until SIGINT/SIGTERM arrives, or the API server ends on its own."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({stopper, api_task}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(config: ControlConfig) -> None:
    """Run `serve` on a uvloop event loop (the process's main thread)."""
    import uvloop

    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


__all__ = ["client_url", "grpc_server_options", "run", "serve"]
