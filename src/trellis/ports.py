"""Free TCP ports on 127.0.0.1 for servers another process will bind (the demo's apps,
the tests' servers), taken outside the kernel's ephemeral range.

A port found by binding port 0 and closing the socket comes from the ephemeral
range, the range the kernel also hands out to every other bind to port 0 and as
the local port of outgoing connections: between picking it and the server
binding it, any of those may take it ("address already in use", seen in CI).
Ports below that range are never given out on their own, so a port picked there
and checked free stays free until the server binds it (unless another process
picks ports the same way: each port is handed out once per process, not once per
machine). Only 127.0.0.1 is checked.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000  # above the well-known and Trellis's default ports (150xx)
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """Nothing is bound to `port` on 127.0.0.1 right now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, which no other call of this session returned."""
    highest = _ephemeral_start() - 1
    if highest - LOWEST >= 1000:
        for _ in range(1000):
            port = random.randint(LOWEST, highest)
            if port not in _given and bindable(port):
                _given.add(port)
                return port
    # No room below the ephemeral range on this machine: the kernel's choice.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _given.add(port)
    return port
