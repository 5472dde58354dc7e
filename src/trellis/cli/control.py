"""`trellis control`: run the control plane (API, xDS, registry) in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trellis.cli.client import stderr
from trellis.control.config import (
    DEFAULT_API_LISTEN,
    DEFAULT_DATA_DIR,
    DEFAULT_XDS_LISTEN,
    LOG_LEVELS,
    ControlConfig,
    HostPort,
)


def _address(value: str) -> HostPort:
    try:
        return HostPort.parse(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def control(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="state: SQLite store, admin token digest")
    ] = DEFAULT_DATA_DIR,
    listen: Annotated[
        str, typer.Option("--listen", help="REST API address (HOST:PORT)")
    ] = DEFAULT_API_LISTEN,
    xds_listen: Annotated[
        str,
        typer.Option(
            "--xds-listen",
            help="xDS (ADS) gRPC address; loopback by default, use 0.0.0.0:15010 for other hosts",
        ),
    ] = DEFAULT_XDS_LISTEN,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"one of {', '.join(LOG_LEVELS)}")
    ] = "info",
) -> None:
    """Run the control plane: REST API, xDS server and workload registry."""
    if log_level not in LOG_LEVELS:
        raise typer.BadParameter(
            f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--log-level"
        )
    config = ControlConfig(
        data_dir=data_dir, api=_address(listen), xds=_address(xds_listen), log_level=log_level
    )
    from trellis.control.server import run

    try:
        run(config)
    except OSError as e:
        stderr.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
