"""The CLI's config file: `{"server": URL, "token": TOKEN}` (JSON, mode 0600).

Location: `$TRELLIS_CONFIG`, else `~/.config/trellis/config.json`. `trellis
control` writes it on first start (the only time it knows the token); the
CLI reads it. Knows nothing of HTTP.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVER = "http://127.0.0.1:7070"


def config_path() -> Path:
    env = os.environ.get("TRELLIS_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "trellis" / "config.json"


@dataclass(frozen=True, slots=True)
class CliConfig:
    server: str | None = None
    token: str | None = None


def read_config(path: Path | None = None) -> CliConfig:
    """The saved config, or an empty one when the file is missing or unreadable."""
    path = path or config_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return CliConfig()
    if not isinstance(raw, dict):
        return CliConfig()
    server, token = raw.get("server"), raw.get("token")
    return CliConfig(
        server if isinstance(server, str) else None, token if isinstance(token, str) else None
    )


def write_config(config: CliConfig, path: Path | None = None) -> Path:
    """Write (replace) the config file with mode 0600; its directory is made 0700."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": config.server, "token": config.token}, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
