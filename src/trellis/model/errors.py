"""Validation errors that name the document, the field path and the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def describe_value(value: Any) -> str:
    """A YAML/JSON value as an error message names it: `boolean true`, `string '5'`, `a list`."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"  # what else YAML makes: a date, bytes (!!binary), a set


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in one field: `path` is dotted with list indexes (`spec.rules[0].matches`)."""

    path: str
    reason: str
    line: int | None = None  # 1-based line of the field in the source YAML, when known

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


@dataclass(frozen=True, slots=True)
class DocumentError:
    """Every problem of one document of a (possibly multi-document) input."""

    document: str  # "HTTPRoute default/reviews" or "document 3" when kind/name are unknown
    errors: tuple[FieldError, ...]
    index: int | None = None  # position in a multi-document input, from 0
    line: int | None = None  # 1-based line where the document starts, when known
    source: str | None = None  # file name, when known

    def __str__(self) -> str:
        """Compiler style, one line per field: `mesh.yaml:12: HTTPRoute shop/r: spec.x: reason`."""
        lines = []
        for e in self.errors:
            line = e.line if e.line is not None else self.line
            where = ":".join(str(p) for p in (self.source, line) if p is not None)
            text = f"{e.path}: {e.reason}" if e.path else e.reason
            lines.append(f"{where + ': ' if where else ''}{self.document}: {text}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "document": self.document,
            "index": self.index,
            "line": self.line,
            "source": self.source,
            "errors": [{"path": e.path, "reason": e.reason, "line": e.line} for e in self.errors],
        }


@dataclass(slots=True)
class InvalidDocuments(Exception):
    """Raised when an input is rejected whole; carries every document's errors."""

    problems: list[DocumentError] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
