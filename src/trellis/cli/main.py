"""The `trellis` command: one typer app, one module per command.

Commands are imported only when they run: `trellis proxy` and `trellis run` are
long-lived processes whose memory is the sidecar's, and the other commands'
libraries (the REST client, tables, the resource model) would cost them tens
of megabytes. `trellis --help` (or no command) builds the whole app.

A command's module attribute is either a function (one command) or a
`typer.Typer` (a group such as `trellis token create|list|revoke`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

# name -> (module, function, typer command settings)
COMMANDS: dict[str, tuple[str, str, dict[str, object]]] = {
    "control": ("trellis.cli.control", "control", {}),
    "apply": ("trellis.cli.apply", "apply", {}),
    "get": ("trellis.cli.get", "get", {}),
    "delete": ("trellis.cli.delete", "delete", {}),
    "describe": ("trellis.cli.describe", "describe", {}),
    "status": ("trellis.cli.status", "status", {}),
    "token": ("trellis.cli.token", "app", {}),
    "ca": ("trellis.cli.ca", "app", {}),
    "identity": ("trellis.cli.identity", "app", {}),
    "check": ("trellis.cli.check", "check", {}),
    "proxy": ("trellis.cli.proxy", "proxy", {}),
    "run": ("trellis.cli.run", "run", {"context_settings": {"allow_interspersed_args": False}}),
}


def build(names: Sequence[str] = tuple(COMMANDS)) -> typer.Typer:
    app = typer.Typer(
        name="trellis",
        help="Trellis: a service mesh for hosts, VMs and processes.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _group() -> None:
        """Trellis: a service mesh for hosts, VMs and processes."""

    for name in names:
        module, function, settings = COMMANDS[name]
        command = getattr(importlib.import_module(module), function)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name, **settings)  # type: ignore[arg-type]
        else:
            app.command(name=name, **settings)(command)  # type: ignore[arg-type]
    return app


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    wanted = args[0] if args else None
    app = build([wanted] if wanted in COMMANDS else tuple(COMMANDS))
    app(args=args, prog_name="trellis")


if __name__ == "__main__":
    main()
