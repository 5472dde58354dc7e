"""`trellis control` settings: where state lives, where the API, xDS and the secure port listen,
which CA signs, and how much memory the trace store may hold. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from trellis.keepalive import SERVER, ServerPingPolicy

DEFAULT_DATA_DIR = Path(".trellis")
DEFAULT_API_LISTEN = "127.0.0.1:7070"
# Loopback by default, like the API: exposing xDS to other hosts is a choice (`--xds-listen
# 0.0.0.0:15010`), since the stream carries the whole mesh's config.
DEFAULT_XDS_LISTEN = "127.0.0.1:15010"
# TLS from the first byte: the CA service (CSR -> SVID) and ADS bound to client certificates.
DEFAULT_SECURE_LISTEN = "127.0.0.1:15012"
LOG_LEVELS = ("debug", "info", "warning", "error")
# The built-in trace store's bound: ~100,000 sidecar spans (~650 bytes each, kept as
# protobuf, plus ~340 bytes of bookkeeping), about an hour of a small mesh at 1% sampling.
DEFAULT_TRACE_STORE_BYTES = 64 * 1024 * 1024
MIN_TRACE_STORE_BYTES = 64 * 1024  # below this not one sidecar batch would fit

_SIZE = re.compile(r"^([0-9]+)\s*(|B|KiB|MiB|GiB|K|M|G|KB|MB|GB)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Bytes in `67108864`, `64MiB`, `64M`, `512KiB`, `1GiB` (K, M and G are powers of 1024)."""
    found = _SIZE.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size such as 64MiB, 512KiB or 67108864")
    number, unit = found.groups()
    return int(number) * _SIZE_UNITS[unit[:1].lower()]


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces); port 0 picks a free one."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"{text!r} is not HOST:PORT")
        host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    api: HostPort = field(default_factory=lambda: HostPort.parse(DEFAULT_API_LISTEN))
    xds: HostPort = field(default_factory=lambda: HostPort.parse(DEFAULT_XDS_LISTEN))
    log_level: str = "info"
    sweep_interval: float = 1.0
    secure: HostPort = field(default_factory=lambda: HostPort.parse(DEFAULT_SECURE_LISTEN))
    secure_sans: tuple[str, ...] = ()  # extra DNS names / IPs of the serving certificate
    ca_cert: Path | None = None  # the user's intermediate, then its issuers up to the root
    ca_key: Path | None = None
    # What xDS and CA clients may ping (both gRPC ports); tests scale it down.
    keepalive: ServerPingPolicy = SERVER
    # The trace store's memory bound: the oldest traces are evicted past it.
    trace_store_bytes: int = DEFAULT_TRACE_STORE_BYTES

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def ca_db(self) -> Path:
        return self.data_dir / "ca.db"
