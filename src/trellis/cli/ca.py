"""`trellis ca rotate [--finish]` and `trellis ca bundle`: the mesh CA's roots.

Rotation (self-signed CA): `rotate` makes a new root that signs every new
certificate, while the bundle trusts both roots; once every workload has
renewed (one certificate TTL, or see `trellis check`), `rotate --finish` drops
the old root. See docs/design/identity.md, "Root rotation".
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import Server

app = typer.Typer(help="The mesh CA: trust bundle and root rotation.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """The mesh CA: trust bundle and root rotation."""


def _describe(ca: dict[str, Any]) -> list[str]:
    lines = [f"signing: {ca['signing']['subject']} (until {ca['signing']['notAfter']})"]
    for i, root in enumerate(ca["roots"]):
        role = "current" if i == 0 else "previous"
        lines.append(f"trusted root ({role}): {root['subject']} (until {root['notAfter']})")
    return lines


@app.command("rotate")
def rotate(
    finish: Annotated[
        bool, typer.Option("--finish", help="drop the old roots once every workload renewed")
    ] = False,
    server: Server = None,
) -> None:
    """Start a root rotation (new root signs, both trusted), or finish it (--finish)."""
    with reporting():
        try:
            ca = connect(server).request("POST", "/api/v1/ca/rotate", json={"finish": finish})
        except ApiError as e:
            if e.status == 409:
                raise CliError(e.message) from None
            raise
        for line in _describe(ca):
            typer.echo(line)
        if finish:
            typer.echo("rotation finished: only the current root is trusted")
        else:
            typer.echo(
                "rotation started: new certificates come from the new root; run "
                "`trellis ca rotate --finish` once every workload has renewed "
                f"(within {ca['certificateTTLSeconds'] / 3600:g}h)"
            )


@app.command("bundle")
def bundle(server: Server = None) -> None:
    """Print the trusted roots (PEM), e.g. for `trellis run --ca-file`."""
    with reporting():
        text = connect(server).request("GET", "/api/v1/ca/bundle")
        if not isinstance(text, str) or "BEGIN CERTIFICATE" not in text:
            raise CliError("the control plane did not answer with PEM certificates")
        typer.echo(text, nl=False)
