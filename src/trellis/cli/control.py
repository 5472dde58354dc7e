"""`trellis control`: run the control plane (API, xDS, registry, CA) in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trellis.cli.client import stderr
from trellis.control.config import (
    DEFAULT_API_LISTEN,
    DEFAULT_DATA_DIR,
    DEFAULT_SECURE_LISTEN,
    DEFAULT_TRACE_STORE_BYTES,
    DEFAULT_XDS_LISTEN,
    LOG_LEVELS,
    MIN_TRACE_STORE_BYTES,
    ControlConfig,
    HostPort,
    parse_size,
)


def _address(value: str) -> HostPort:
    try:
        return HostPort.parse(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _store_size(value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--trace-store-bytes") from None
    if size < MIN_TRACE_STORE_BYTES:
        raise typer.BadParameter(
            f"{value} is less than the smallest store, {MIN_TRACE_STORE_BYTES // 1024}KiB",
            param_hint="--trace-store-bytes",
        )
    return size


def control(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="state: SQLite store, admin token digest, CA (ca/, ca.db)"),
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
    secure_listen: Annotated[
        str,
        typer.Option(
            "--secure-listen",
            help="secure port (TLS from the first byte): the CA service and xDS bound to "
            "client certificates",
        ),
    ] = DEFAULT_SECURE_LISTEN,
    secure_san: Annotated[
        list[str] | None,
        typer.Option(
            "--secure-san", help="an extra DNS name or IP of the secure port's certificate (repeat)"
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            help="run the CA as your intermediate: its certificate, then its issuers up to your "
            "root (PEM)",
        ),
    ] = None,
    ca_key: Annotated[
        Path | None, typer.Option("--ca-key", help="the key of --ca-cert's intermediate (PEM)")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"one of {', '.join(LOG_LEVELS)}")
    ] = "info",
    trace_store_bytes: Annotated[
        str,
        typer.Option(
            "--trace-store-bytes",
            help="memory the built-in trace store may hold (64MiB, 512KiB, bytes); the oldest "
            "traces are evicted past it",
        ),
    ] = f"{DEFAULT_TRACE_STORE_BYTES // 2**20}MiB",
) -> None:
    """Run the control plane: REST API, xDS server, workload registry and the mesh CA."""
    if log_level not in LOG_LEVELS:
        raise typer.BadParameter(
            f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--log-level"
        )
    store_bytes = _store_size(trace_store_bytes)
    if (ca_cert is None) != (ca_key is None):
        raise typer.BadParameter("--ca-cert and --ca-key go together", param_hint="--ca-cert")
    config = ControlConfig(
        data_dir=data_dir,
        api=_address(listen),
        xds=_address(xds_listen),
        secure=_address(secure_listen),
        secure_sans=tuple(secure_san or ()),
        ca_cert=ca_cert,
        ca_key=ca_key,
        log_level=log_level,
        trace_store_bytes=store_bytes,
    )
    from trellis.control.ca.authority import CaSetupError
    from trellis.control.server import run

    try:
        run(config)
    except (OSError, CaSetupError) as e:
        stderr.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
