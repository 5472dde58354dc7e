"""Run a ProxyApp in the foreground until SIGINT/SIGTERM, then drain and stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TextIO

import uvloop

from trellis.proxy.app import ProxyApp
from trellis.proxy.identity.errors import IdentityError
from trellis.proxy.options import ProxyOptions

DRAIN_SECONDS = 5.0


async def serve(options: ProxyOptions, *, out: TextIO = sys.stdout) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = ProxyApp(options)
    try:
        try:
            await app.start()
        except IdentityError as e:
            raise OSError(str(e)) from None
        for name in ("outbound", "inbound", "admin", "metrics"):
            if name in app.addresses:
                out.write(f"{name} listening on {app.addresses[name]}\n")
        out.flush()
        await stop.wait()
        await app.drain(DRAIN_SECONDS)
    finally:
        await app.aclose()


def run(options: ProxyOptions, *, log_level: str = "warning") -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvloop.run(serve(options))
