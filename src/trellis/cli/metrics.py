"""`trellis metrics token|targets`: what a Prometheus needs to scrape the mesh."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from trellis.cli import output
from trellis.cli.client import CliError, connect, reporting
from trellis.cli.options import Server

app = typer.Typer(
    help="Prometheus: the scrape token and the service-discovery targets.", no_args_is_help=True
)


@app.command()
def token(
    sha256: Annotated[
        bool, typer.Option("--sha256", help="print its SHA-256 (what proxies are given)")
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="write it to FILE (mode 0600), for credentials_file"),
    ] = None,
    server: Server = None,
) -> None:
    """The scrape token Prometheus sends to the service discovery and to every proxy's
    metrics listener (needs the admin token)."""
    with reporting():
        body = connect(server).request("GET", "/api/v1/metrics/scrape-token")
        value = str(body["sha256"] if sha256 else body["token"])
        if file is None:
            typer.echo(value)
            return
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            file.chmod(0o600)
        except OSError as e:
            raise CliError(f"cannot write {file}: {e.strerror or e}") from None
        typer.echo(f"written to {file} (mode 0600)", err=True)


@app.command()
def targets(server: Server = None) -> None:
    """Every proxy's metrics endpoint with its labels, as Prometheus's HTTP SD sees them."""
    with reporting():
        typer.echo(output.to_json(connect(server).request("GET", "/api/v1/metrics/targets")))
