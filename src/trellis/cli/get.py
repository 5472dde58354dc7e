"""`trellis get KIND [NAME]`: list or show resources as a table, YAML or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from trellis.cli import output
from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import OutputFormat, Server, plural_word, resolve_kind
from trellis.model import plural


def get(
    kind: Annotated[str, typer.Argument(help="kind, plural or alias: services, svc, routes, ...")],
    name: Annotated[str | None, typer.Argument(help="one resource's name")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    out: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.table,
    server: Server = None,
) -> None:
    """Show resources (all of a kind in a namespace, or one by name)."""
    with reporting():
        resolved = resolve_kind(kind)
        client = connect(server)
        path = f"/api/v1/{plural(resolved)}"
        docs: list[dict[str, Any]]
        if name is not None:
            try:
                docs = [client.request("GET", f"{path}/{name}", params={"namespace": namespace})]
            except ApiError as e:
                if e.status == 404:
                    raise CliError(
                        f"{resolved.lower()}/{name} not found in namespace {namespace}"
                    ) from None
                raise
        else:
            params = {"namespace": None if all_namespaces else namespace}
            docs = client.request("GET", path, params=params)["items"]
        if out is OutputFormat.json:
            typer.echo(output.to_json(docs[0] if name is not None else {"items": docs}))
        elif out is OutputFormat.yaml:
            typer.echo(output.to_yaml(docs), nl=False)
        elif not docs:
            where = (
                "" if all_namespaces or resolved == "MeshConfig" else f" in namespace {namespace}"
            )
            typer.echo(f"No {plural_word(resolved)} found{where}.", err=True)
        else:
            output.console().print(output.resource_table(resolved, docs))
