"""Reading manifests for `apply -f` / `delete -f`, remembering where each document came from.

Validation happens here, locally, so errors carry file names and YAML lines;
server-side rejections (references) are mapped back to the same places by
document index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trellis.cli.client import CliError
from trellis.model import Document, DocumentError, FieldError, InvalidDocuments
from trellis.model.loader import load_documents

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Origin:
    source: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Manifests:
    docs: list[Document]
    origins: list[Origin]  # one per document


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; directories become their manifests, recursively, in name order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES))
        else:
            files.append(p)
    return files


def _document_lines(text: str) -> list[int | None]:
    try:
        return [
            n.start_mark.line + 1
            for n in yaml.compose_all(text, Loader=yaml.SafeLoader)
            if n is not None
        ]
    except yaml.YAMLError:
        return []


def load(paths: list[Path]) -> Manifests:
    """Every valid document of `paths`; CliError listing every problem of every file otherwise."""
    docs: list[Document] = []
    origins: list[Origin] = []
    problems: list[DocumentError] = []
    for f in expand(paths):
        try:
            text = f.read_text()
        except OSError as e:
            raise CliError(f"cannot read {f}: {e.strerror or e}") from None
        try:
            found = load_documents(text, source=str(f))
        except InvalidDocuments as e:
            problems.extend(e.problems)
            continue
        lines = _document_lines(text)
        for i, doc in enumerate(found):
            docs.append(doc)
            origins.append(Origin(str(f), lines[i] if i < len(lines) else None))
    if problems:
        raise CliError(_count(len(problems)) + ", nothing applied", _lines(problems))
    if not docs:
        raise CliError("no documents found in " + ", ".join(str(p) for p in paths))
    return Manifests(docs, origins)


def _count(n: int) -> str:
    return f"{n} invalid document{'s' if n != 1 else ''}"


def _lines(problems: list[DocumentError]) -> list[str]:
    return [line for p in problems for line in str(p).splitlines()]


def server_problems(body: Any, origins: list[Origin]) -> CliError:
    """A 422 answer's problems as CliError lines naming file and line of each document."""
    raw = body.get("problems") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        message = body.get("error") if isinstance(body, dict) else None
        return CliError(str(message or "rejected by the control plane"))
    problems = []
    for p in raw:
        index = p.get("index")
        origin = origins[index] if isinstance(index, int) and 0 <= index < len(origins) else None
        errors = tuple(
            FieldError(e.get("path", ""), e.get("reason", "")) for e in p.get("errors", [])
        )
        problems.append(
            DocumentError(
                str(p.get("document", "document")),
                errors,
                index=index,
                line=origin.line if origin else p.get("line"),
                source=origin.source if origin else p.get("source"),
            )
        )
    return CliError(_count(len(problems)) + ", nothing applied", _lines(problems))
