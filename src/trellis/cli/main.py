"""The `trellis` command: one typer app, one module per command."""

from __future__ import annotations

import typer

from trellis.cli.apply import apply
from trellis.cli.control import control
from trellis.cli.delete import delete
from trellis.cli.describe import describe
from trellis.cli.get import get
from trellis.cli.proxy import proxy
from trellis.cli.run import run
from trellis.cli.status import status

app = typer.Typer(
    name="trellis",
    help="Trellis: a service mesh for hosts, VMs and processes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(control)
app.command()(apply)
app.command()(get)
app.command()(delete)
app.command()(describe)
app.command()(status)
app.command()(proxy)
app.command(context_settings={"allow_interspersed_args": False})(run)

if __name__ == "__main__":
    app()
