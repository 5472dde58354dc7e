"""`trellis apply -f FILE|DIR|-`: validate locally, then create or replace all documents at once.

All at once means one request (one store transaction on the control plane), however
many documents: see `Client.post_documents` for its size bound.
"""

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
        sources = {o.source for o in manifests.origins}
        body = {
            "documents": [d.to_dict() for d in manifests.docs],
            "source": next(iter(sources)) if len(sources) == 1 else None,
        }
        try:
            result = client.post_documents("/api/v1/apply", body, params=dry_run_param(dry_run))
        except ApiError as e:
            if e.status == 422:
                raise files.server_problems(e.body, manifests.origins) from None
            raise
        suffix = " (dry run)" if dry_run else ""
        lines = [
            f"{short_key(c['kind'], c['name'])} {c['action']}{suffix}" for c in result["changes"]
        ]
        if lines:
            typer.echo("\n".join(lines))  # one write: 10,000 lines are 10,000 flushes otherwise
