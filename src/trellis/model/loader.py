"""YAML text → validated documents, with the line of every document (and of bad fields).

A multi-document input is accepted or rejected whole: `load_stream` raises
`InvalidDocuments` listing every problem of every document, or returns them all.
The text is read once, a document at a time, within the bounds of
`trellis.model.limits` (`yaml_stream`): a file nested too deeply, or whose
aliases would expand it beyond them, is one more problem with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from trellis.model.base import Document
from trellis.model.documents import InvalidDocument, parse_document
from trellis.model.errors import DocumentError, FieldError, InvalidDocuments
from trellis.model.yaml_stream import LimitExceeded, read_documents


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


# The `document` of a problem with the stream itself (not valid YAML, or beyond a bound).
STREAM_PROBLEM = "YAML"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated document and the 1-based line where it starts in its source."""

    doc: Document
    line: int


def _yaml_problem(err: yaml.YAMLError, source: str | None) -> DocumentError:
    """A YAML error as one line: what is wrong, where (file and line), no snippet."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        reason = err.problem or err.context or "malformed"
        if err.context and err.problem:
            reason += f" ({err.context}"
            reason += f" at line {err.context_mark.line + 1})" if err.context_mark else ")"
        if not isinstance(err, LimitExceeded):
            reason = f"not valid YAML: {reason}"
        line = mark.line + 1 if mark is not None else None
    else:  # a ReaderError (a character YAML does not allow): its text has no line
        reason, line = "not valid YAML: " + " ".join(str(err).split()), None
    return DocumentError(STREAM_PROBLEM, (FieldError("", reason),), line=line, source=source)


def load_stream(text: str, source: str | None = None) -> list[Loaded]:
    """Parse and validate every document of a YAML stream, in one pass; empty ones are skipped.

    Raises `InvalidDocuments` with every problem (each document's, then the YAML error
    that stopped the reading, if any), or returns every document with its line.
    """
    problems: list[DocumentError] = []
    loaded: list[Loaded] = []
    index = 0
    try:
        for node, raw in read_documents(text):
            line = node.start_mark.line + 1
            try:
                loaded.append(
                    Loaded(parse_document(raw, index=index, line=line, source=source), line)
                )
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
    except yaml.YAMLError as e:
        problems.append(_yaml_problem(e, source))
    if problems:
        raise InvalidDocuments(problems)
    return loaded


def load_documents(text: str, source: str | None = None) -> list[Document]:
    """Every document of a YAML stream, validated (see `load_stream`)."""
    return [item.doc for item in load_stream(text, source)]


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
