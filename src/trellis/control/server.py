"""`trellis control`: the composition root that wires the control plane on one event loop.

Start: data dir (0700) → admin token → SqliteStore → ADS on a grpc.aio server
→ Registry → PushController (store → PushContext → ads.push) → the REST API
on uvicorn. We own SIGINT/SIGTERM (uvicorn's handlers are turned off) and
shut down in steps:
  1. stop the API: stop accepting, let in-flight requests finish (bounded);
  2. stop gRPC with a grace period, so streams end cleanly and proxies reconnect;
  3. stop the push controller and the registry's sweeper;
  4. close the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TextIO

import grpc
import uvicorn

from trellis.cli.config_file import CliConfig, write_config
from trellis.control.api import ApiState, TokenSetup, create_app, load_or_create
from trellis.control.api.serving import ApiServer, listen_tcp
from trellis.control.config import ControlConfig, HostPort
from trellis.control.push.controller import PushController
from trellis.control.registry import Registry
from trellis.control.xds.server import AdsServer
from trellis.store.sqlite import SqliteStore

log = logging.getLogger("trellis.control")

API_GRACE_SECONDS = 5
GRPC_GRACE_SECONDS = 2.0


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
    store = SqliteStore(config.state_db)
    # No SO_REUSEPORT: a second control plane on the same port must fail, not share it.
    grpc_server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            # Proxies ping every 30 s to notice a dead control plane; allow it (the
            # default minimum, 5 minutes, answers faster pings with GOAWAY).
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    try:
        ads = AdsServer()
        ads.register(grpc_server)
        try:
            xds_port = grpc_server.add_insecure_port(str(config.xds))
        except RuntimeError as e:
            raise OSError(f"cannot listen for xDS on {config.xds}: {e}") from None
        if xds_port == 0:
            raise OSError(f"cannot listen for xDS on {config.xds}")
        await grpc_server.start()
        # Only once both ports are ours: a first start that fails must not swallow the token.
        tokens = _admin_token(config)
        async with (
            Registry(store, sweep_interval=config.sweep_interval) as registry,
            PushController(store, on_push=ads.push) as push,
        ):
            xds_local = client_url(HostPort(config.xds.host, xds_port)).removeprefix("http://")
            app = create_app(
                ApiState(store, registry, ads, tokens.verifier, push, xds_address=xds_local)
            )
            uv_config = uvicorn.Config(
                app,
                log_config=None,
                log_level=config.log_level,
                lifespan="off",
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
            await _wait_for_stop(api_task)
            # 1. stop accepting API connections, finish in-flight requests (bounded)
            api.should_exit = True
            await api_task
            # 2. end xDS streams with a grace period
            await grpc_server.stop(GRPC_GRACE_SECONDS)
            # 3. leaving the `async with` stops the push controller and the sweeper
    finally:
        await grpc_server.stop(None)
        api_sock.close()
        # 4. close the store last: everything above may still write to it
        await store.aclose()
    log.info("control plane stopped")


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


__all__ = ["client_url", "run", "serve"]
