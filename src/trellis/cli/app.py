"""The typer application of `trellis`: every command in cli/main.py's tables.

Separate from cli/main.py so that `trellis proxy` never imports typer.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import typer

from trellis.cli.main import COMMANDS, LEAN_COMMANDS


def build(names: Sequence[str] = (*COMMANDS, *LEAN_COMMANDS)) -> typer.Typer:
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
        if name in LEAN_COMMANDS:
            _add_lean(app, name)
            continue
        module, function, settings = COMMANDS[name]
        command = getattr(importlib.import_module(module), function)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name, **settings)  # type: ignore[arg-type]
        else:
            app.command(name=name, **settings)(command)  # type: ignore[arg-type]
    return app


def _add_lean(app: typer.Typer, name: str) -> None:
    module, summary = LEAN_COMMANDS[name]
    settings = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}

    def forward(ctx: typer.Context) -> None:
        importlib.import_module(module).main(ctx.args)

    app.command(name=name, help=summary, context_settings=settings, add_help_option=False)(forward)
