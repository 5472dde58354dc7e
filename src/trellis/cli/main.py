"""The `trellis` command: one typer app, one module per command.

Commands are imported only when they run: `trellis proxy` and `trellis run` are
long-lived processes whose memory is the sidecar's, and the other commands'
libraries (the REST client, tables, the resource model) would cost them tens
of megabytes. `trellis --help` (or no command) builds the whole app.

A command's module attribute is either a function (one command) or a
`typer.Typer` (a group such as `trellis token create|list|revoke`).

`trellis proxy` and `trellis run` parse with argparse and never import typer:
typer's run-time coercion imports pydantic, ~9 MB in every sidecar (cli/proxy.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Commands with their own argparse parser: `main(argv)` in the module; typer only lists them.
LEAN_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("trellis.cli.run", "Run CMD beside a sidecar: it joins the mesh (-- CMD ARGS...)."),
    "proxy": ("trellis.cli.proxy", "Run a sidecar proxy (listeners configured over xDS)."),
}
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
    "metrics": ("trellis.cli.metrics", "app", {}),
    "check": ("trellis.cli.check", "check", {}),
    "explain": ("trellis.cli.explain", "explain", {}),
    "traces": ("trellis.cli.traces", "traces", {}),
    "trace": ("trellis.cli.trace", "trace", {}),
    "tap": ("trellis.cli.tap", "tap", {}),
    "top": ("trellis.cli.top", "top", {}),
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    wanted = args[0] if args else ""
    if wanted in LEAN_COMMANDS:
        importlib.import_module(LEAN_COMMANDS[wanted][0]).main(args[1:])
        return
    from trellis.cli.app import build  # typer: only for the commands that use it

    known = wanted in COMMANDS or wanted in LEAN_COMMANDS
    app = build([wanted] if known else (*COMMANDS, *LEAN_COMMANDS))
    app(args=args, prog_name="trellis")


if __name__ == "__main__":
    main()
