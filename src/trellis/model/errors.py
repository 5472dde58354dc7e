"""Validation errors that name the document, the field path and the reason."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in one field: `path` is dotted with list indexes (`spec.rules[0].matches`)."""

    path: str
    reason: str
    line: int | None = None  # 1-based line of the field in the source YAML, when known

    def __str__(self) -> str:
        text = f"{self.path}: {self.reason}" if self.path else self.reason
        return f"line {self.line}: {text}" if self.line is not None else text


@dataclass(frozen=True, slots=True)
class DocumentError:
    """Every problem of one document of a (possibly multi-document) input."""

    document: str  # "HTTPRoute default/reviews" or "document 3" when kind/name are unknown
    errors: tuple[FieldError, ...]
    index: int | None = None  # position in a multi-document input, from 0
    line: int | None = None  # 1-based line where the document starts, when known
    source: str | None = None  # file name, when known

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where += f"{':' if where else 'line '}{self.line}"
        prefix = f"{self.document}" + (f" ({where})" if where else "")
        return "\n".join(f"{prefix}: {e}" for e in self.errors)

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
