"""Header mutations: `*_headers_to_add` / `*_headers_to_remove`, compiled once, applied purely.

Owns Envoy's HeaderParser semantics, level by level:
- a level first removes its `headers_to_remove`, then evaluates its additions
  against the headers as they were before any of them: `OVERWRITE_IF_EXISTS_OR_ADD`
  replaces every value of the name, `OVERWRITE_IF_EXISTS` only when present,
  `APPEND_IF_EXISTS_OR_ADD` (the default) adds one more value, `ADD_IF_ABSENT`
  adds only when the name is absent; overwrites are applied before appends;
- the legacy `append` bool wins when set (true: append, false: overwrite);
  setting it together with a non-default `append_action` is an error, as in Envoy;
- an empty value is not added unless `keep_empty_value`;
- `:`-prefixed names and `host` may be neither added nor removed;
- values are literal: Envoy's `%COMMAND%` formatters are not evaluated.
Levels are applied in Envoy's order: route, then virtual host, then route
configuration (a later level wins), or the reverse with
`most_specific_header_mutations_wins`; the table builds that order.
Must not know about matching or I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields

AppendAction = Literal["append", "add_if_absent", "overwrite", "overwrite_if_exists"]
Headers = list[tuple[str, str]]

# envoy.config.core.v3.HeaderValueOption.HeaderAppendAction values
_ACTIONS: dict[int, AppendAction] = {
    0: "append",
    1: "add_if_absent",
    2: "overwrite",
    3: "overwrite_if_exists",
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")


class HeaderToAdd:
    __slots__ = ("action", "keep_empty", "name", "value")

    def __init__(
        self, name: str, value: str, action: AppendAction = "append", keep_empty: bool = False
    ) -> None:
        self.name = name  # lower-case
        self.value = value
        self.action: AppendAction = action
        self.keep_empty = keep_empty

    def __repr__(self) -> str:
        return f"HeaderToAdd({self.name!r}, {self.value!r}, {self.action!r})"


class HeaderMutation:
    """One level's removals and additions."""

    __slots__ = ("add", "remove")

    def __init__(self, remove: Iterable[str] = (), add: Iterable[HeaderToAdd] = ()) -> None:
        self.remove = frozenset(n.lower() for n in remove)
        self.add = tuple(a for a in add if a.value or a.keep_empty)

    def __bool__(self) -> bool:
        return bool(self.remove or self.add)

    def apply(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """A new list of (name, value) pairs; names compare case-insensitively."""
        remove = self.remove
        out = [(n, v) for n, v in headers if n.lower() not in remove]
        present = {n.lower() for n, _ in out}
        overwrite: list[HeaderToAdd] = []
        append: list[HeaderToAdd] = []
        for h in self.add:
            action = h.action
            if action == "append" or (action == "add_if_absent" and h.name not in present):
                append.append(h)
            elif action == "overwrite" or (action == "overwrite_if_exists" and h.name in present):
                overwrite.append(h)
        for h in overwrite:
            out = [(n, v) for n, v in out if n.lower() != h.name]
            out.append((h.name, h.value))
        out.extend((h.name, h.value) for h in append)
        return out

    def __repr__(self) -> str:
        return f"HeaderMutation(remove={sorted(self.remove)}, add={list(self.add)})"


def apply_header_mutations(
    mutations: Sequence[HeaderMutation], headers: Iterable[tuple[str, str]]
) -> Headers:
    """Apply `mutations` in order (each one a level) to (name, value) pairs; pure."""
    out = list(headers)
    for m in mutations:
        out = m.apply(out)
    return out


def _header_value(option: Any, path: str) -> HeaderToAdd:
    check_fields(option, path, applied=("header", "append", "append_action", "keep_empty_value"))
    header = option.header
    where = field(path, "header")
    check_fields(header, where, applied=("key", "value", "raw_value"))
    name = header.key.lower()
    if not _TOKEN.fullmatch(name) or name == "host":
        raise RouteConfigError(
            field(where, "key"),
            f"{header.key!r}: ':'-prefixed, host or invalid names may not be set",
        )
    if header.value and header.raw_value:
        raise RouteConfigError(where, "set value or raw_value, not both")
    value = header.value or header.raw_value.decode("latin-1")
    if _BAD_VALUE.search(value):
        raise RouteConfigError(field(where, "value"), "a header value may not hold NUL, CR or LF")
    action = _ACTIONS.get(option.append_action)
    if action is None:
        raise RouteConfigError(
            field(path, "append_action"), f"unknown append action {option.append_action}"
        )
    if option.HasField("append"):
        if action != "append":
            raise RouteConfigError(path, "both append and append_action are set")
        action = "append" if option.append.value else "overwrite"
    return HeaderToAdd(name, value, action, option.keep_empty_value)


def compile_mutation(
    message: Any, path: str, kind: Literal["request", "response"]
) -> HeaderMutation:
    """The `{kind}_headers_to_add` / `{kind}_headers_to_remove` of a route, vhost or config."""
    add_field, remove_field = f"{kind}_headers_to_add", f"{kind}_headers_to_remove"
    add = [
        _header_value(option, f"{field(path, add_field)}[{i}]")
        for i, option in enumerate(getattr(message, add_field))
    ]
    remove = list(getattr(message, remove_field))
    for i, name in enumerate(remove):
        if not _TOKEN.fullmatch(name) or name.lower() == "host":
            raise RouteConfigError(
                f"{field(path, remove_field)}[{i}]",
                f"{name!r}: ':'-prefixed, host or invalid names may not be removed",
            )
    return HeaderMutation(remove, add)
