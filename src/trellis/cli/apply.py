"""`trellis apply -f FILE|DIR`: validate locally, then create or replace all documents at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trellis.cli import files
from trellis.cli.client import ApiError, connect, dry_run_param, reporting
from trellis.cli.options import Server
from trellis.cli.output import short_key


def apply(
    filename: Annotated[
        list[Path],
        typer.Option("--filename", "-f", help="a manifest file or directory (repeatable)"),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and show what would change")
    ] = False,
    server: Server = None,
) -> None:
    """Create or replace resources from YAML manifests: all of them, or none."""
    with reporting():
        manifests = files.load(filename)
        client = connect(server)
        body = {
            "documents": [d.to_dict() for d in manifests.docs],
            "source": str(filename[0]) if len(filename) == 1 else None,
        }
        try:
            result = client.request(
                "POST", "/api/v1/apply", params=dry_run_param(dry_run), json=body
            )
        except ApiError as e:
            if e.status == 422:
                raise files.server_problems(e.body, manifests.origins) from None
            raise
        suffix = " (dry run)" if dry_run else ""
        for change in result["changes"]:
            typer.echo(f"{short_key(change['kind'], change['name'])} {change['action']}{suffix}")
