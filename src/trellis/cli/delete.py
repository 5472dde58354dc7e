"""`trellis delete KIND NAME` or `trellis delete -f FILE`: delete resources (atomically for -f)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trellis.cli import files
from trellis.cli.client import ApiError, CliError, connect, dry_run_param, reporting
from trellis.cli.options import Server, resolve_kind
from trellis.cli.output import short_key
from trellis.model import plural


def delete(
    kind: Annotated[str | None, typer.Argument(help="kind, plural or alias")] = None,
    name: Annotated[str | None, typer.Argument(help="the resource's name")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    filename: Annotated[
        list[Path] | None, typer.Option("--filename", "-f", help="delete what these manifests name")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be deleted")] = False,
    server: Server = None,
) -> None:
    """Delete one resource by kind and name, or every resource a manifest names."""
    suffix = " (dry run)" if dry_run else ""
    with reporting():
        if filename:
            if kind or name:
                raise CliError("give either KIND NAME or -f FILE, not both")
            manifests = files.load(filename)
            client = connect(server)
            docs = [
                {"kind": d.kind, "metadata": {"name": d.name, "namespace": d.metadata.namespace}}
                for d in manifests.docs
            ]
            result = client.request(
                "POST", "/api/v1/delete", params=dry_run_param(dry_run), json={"documents": docs}
            )
            for change in result["changes"]:
                action = "not found" if change["action"] == "absent" else change["action"]
                typer.echo(f"{short_key(change['kind'], change['name'])} {action}{suffix}")
            return
        if not kind or not name:
            raise CliError(
                "usage: trellis delete KIND NAME [-n NAMESPACE], or trellis delete -f FILE"
            )
        resolved = resolve_kind(kind)
        client = connect(server)
        params = {"namespace": namespace, **dry_run_param(dry_run)}
        try:
            result = client.request("DELETE", f"/api/v1/{plural(resolved)}/{name}", params=params)
        except ApiError as e:
            if e.status == 404:
                raise CliError(
                    f"{short_key(resolved, name)} not found in namespace {namespace}"
                ) from None
            raise
        for change in result["changes"]:
            typer.echo(f"{short_key(change['kind'], change['name'])} {change['action']}{suffix}")
