"""Options and arguments several commands share."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from trellis.cli.client import CliError
from trellis.model import ALIASES, plural

Server = Annotated[
    str | None,
    typer.Option(
        "--server", help="control plane URL (default: $TRELLIS_SERVER, config file, :7070)"
    ),
]


class OutputFormat(StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


def resolve_kind(text: str) -> str:
    """A kind from its name, plural or alias, any case (`svc`, `Services`, `httproute`)."""
    lower = text.lower()
    kind = ALIASES.get(lower)
    if kind is None:
        known = ", ".join(sorted(ALIASES))
        raise CliError(f"unknown kind {text!r}; known: {known}")
    return kind


def plural_word(kind: str) -> str:
    """`services`, `destinationpolicies`: for messages to people."""
    return plural(kind)
