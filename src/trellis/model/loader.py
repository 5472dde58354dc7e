"""YAML text → validated documents, with the line of every document (and of bad fields).

A multi-document input is accepted or rejected whole: `load_documents` raises
`InvalidDocuments` listing every problem of every document, or returns them all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from trellis.model.base import Document
from trellis.model.documents import InvalidDocument, parse_document
from trellis.model.errors import DocumentError, FieldError, InvalidDocuments


def _line_of(node: yaml.Node, path: str) -> int | None:
    """1-based line of a field path (`spec.rules[0].matches`) inside a composed YAML node."""
    current = node
    for key, idx in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if key and isinstance(current, yaml.MappingNode):
            found = next((v for k, v in current.value if getattr(k, "value", None) == key), None)
            if found is None:
                found = next(
                    (k for k, _ in current.value if getattr(k, "value", None) == key), None
                )
                return (
                    found.start_mark.line + 1 if found is not None else current.start_mark.line + 1
                )
            current = found
        elif idx and isinstance(current, yaml.SequenceNode) and int(idx) < len(current.value):
            current = current.value[int(idx)]
        else:
            break
    return current.start_mark.line + 1


def load_documents(text: str, source: str | None = None) -> list[Document]:
    """Parse and validate every document of a YAML stream; empty documents are skipped."""
    problems: list[DocumentError] = []
    docs: list[Document] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InvalidDocuments(
            [
                DocumentError(
                    "YAML", (FieldError("", f"not valid YAML: {e}"),), line=line, source=source
                )
            ]
        ) from None
    index = 0
    for node in nodes:
        if node is None:
            continue
        raw: Any = yaml.SafeLoader(text).construct_document(node)
        line = node.start_mark.line + 1
        try:
            docs.append(parse_document(raw, index=index, line=line, source=source))
        except InvalidDocument as bad:
            err = bad.error
            located = tuple(
                FieldError(e.path, e.reason, _line_of(node, e.path) if e.path else line)
                for e in err.errors
            )
            problems.append(
                DocumentError(err.document, located, index=index, line=line, source=source)
            )
        index += 1
    if problems:
        raise InvalidDocuments(problems)
    return docs


def load_paths(paths: list[Path]) -> list[Document]:
    """Every document in these files and directories (*.yaml, *.yml, *.json), in name order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json")))
        else:
            files.append(p)
    problems: list[DocumentError] = []
    docs: list[Document] = []
    for f in files:
        try:
            docs.extend(load_documents(f.read_text(), source=str(f)))
        except InvalidDocuments as e:
            problems.extend(e.problems)
    if problems:
        raise InvalidDocuments(problems)
    return docs
