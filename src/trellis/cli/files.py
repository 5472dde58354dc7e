"""Reading manifests for `apply -f` / `delete -f`, remembering where each document came from.

Validation happens here, locally, so errors carry file names and YAML lines;
server-side rejections (references) are mapped back to the same places by
document index. Each file (or standard input, `-f -`) is read once, within the
bounds of `trellis.model.limits`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis.cli.client import CliError
from trellis.model import Document, DocumentError, FieldError, InvalidDocuments
from trellis.model.loader import STREAM_PROBLEM, load_stream

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"  # `-f -` reads the manifests from standard input


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
        if str(p) != STDIN and p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES))
        else:
            files.append(p)
    return files


def _read(path: Path) -> tuple[str, str]:
    """(source name, text) of a manifest; `-` is standard input."""
    if str(path) == STDIN:
        try:
            return "<stdin>", sys.stdin.read()
        except UnicodeDecodeError as e:
            raise CliError(f"cannot read standard input: not UTF-8 text ({e.reason})") from None
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CliError(
            f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None


def load(paths: list[Path]) -> Manifests:
    """Every valid document of `paths`; CliError listing every problem of every file otherwise."""
    docs: list[Document] = []
    origins: list[Origin] = []
    problems: list[DocumentError] = []
    for f in expand(paths):
        source, text = _read(f)
        try:
            found = load_stream(text, source=source)
        except InvalidDocuments as e:
            problems.extend(e.problems)
            continue
        for item in found:
            docs.append(item.doc)
            origins.append(Origin(source, item.line))
    if problems:
        raise CliError(_headline(problems), _lines(problems))
    if not docs:
        raise CliError("no documents found in " + ", ".join(str(p) for p in paths))
    return Manifests(docs, origins)


def _count(n: int) -> str:
    return f"{n} invalid document{'s' if n != 1 else ''}"


def _headline(problems: list[DocumentError]) -> str:
    """`2 invalid documents, 1 unreadable file, nothing applied`."""
    unreadable = sum(1 for p in problems if p.document == STREAM_PROBLEM)
    parts = [_count(len(problems) - unreadable)] if len(problems) > unreadable else []
    if unreadable:
        parts.append(f"{unreadable} unreadable file{'s' if unreadable != 1 else ''}")
    return ", ".join([*parts, "nothing applied"])


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
