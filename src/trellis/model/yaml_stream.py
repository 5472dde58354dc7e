"""Reading a YAML stream one document at a time, bounded in nesting depth and alias expansion.

Theory of operation: a parser turns the text into events (libyaml's when PyYAML
has it: five times faster than the pure-Python one, 1.4 s against 7 s for
10,000 documents); PyYAML's composer, extended here, turns the events of one
document into nodes and checks the bounds of `trellis.model.limits` as each
node is made; PyYAML's safe constructor turns the nodes into plain values. One
parser reads the whole stream, once, and each document is handed out as soon
as it is composed, so nothing is read twice and only one document's nodes are
alive at a time.

The bounds: PyYAML composes recursively, so a deeply nested file would end in
RecursionError (libyaml's own composer recurses in C with no limit at all);
aliases are cheap to write and expensive to expand (a "billion laughs" file
of 1 KB expands to gigabytes once validated or sent as JSON), and an alias to
its own ancestor makes a cycle. All three are refused with `LimitExceeded`, a
`yaml.MarkedYAMLError` carrying the mark of the offending node, so callers
report them as they report any YAML error (file and line, no traceback).

Must not know about mesh resources: the values it returns are plain YAML.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from trellis.model.limits import MAX_DEPTH, MIN_ALIAS_EXPANSION


class LimitExceeded(ComposerError):
    """The stream is valid YAML but beyond a bound of `trellis.model.limits`."""

    @classmethod
    def at(cls, event: Event, problem: str) -> LimitExceeded:
        mark: Any = event.start_mark  # libyaml's marks are another class with the same fields
        return cls(None, None, problem, mark)


def _event_source(text: str) -> Any:
    """libyaml's parser when PyYAML was built with it, else PyYAML's own (same events)."""
    if yaml.__with_libyaml__:
        from yaml._yaml import CParser

        return CParser(text)
    return yaml.BaseLoader(text)


class _BoundedLoader(Composer, SafeConstructor, Resolver):
    """PyYAML's composer and safe constructor over `_event_source`, checking the bounds."""

    def __init__(self, text: str) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._events = _event_source(text)
        self._depth = 0  # collections being composed, the current one included
        self._open: set[str] = set()  # anchors of those collections (an alias to one: a cycle)
        self._weights: dict[int, int] = {}  # id(node) -> its expanded weight, this document
        self._alias_limit = max(len(text), MIN_ALIAS_EXPANSION)
        self._alias_left = self._alias_limit

    # The event source, as the composer expects it on self.
    def check_event(self, *choices: type[Event]) -> bool:
        return bool(self._events.check_event(*choices))

    def peek_event(self) -> Event:
        event: Event = self._events.peek_event()
        return event

    def get_event(self) -> Event:
        event: Event = self._events.get_event()
        return event

    def dispose(self) -> None:
        self._events.dispose()

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        self._weights.clear()  # ids are only meaningful while the document's nodes live
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise LimitExceeded.at(
                event, f"nested deeper than {MAX_DEPTH} levels of mappings and sequences"
            )
        anchor = event.anchor
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)

    def _count_alias(self, event: AliasEvent) -> None:
        anchor = event.anchor
        if anchor in self._open:
            raise LimitExceeded.at(
                event, f"alias *{anchor} is inside the node it names (a recursive structure)"
            )
        target = self.anchors.get(anchor)
        if target is None:
            return  # the composer reports the undefined alias
        self._alias_left -= self._weight(target)
        if self._alias_left < 0:
            raise LimitExceeded.at(
                event,
                f"aliases expand this input by more than {self._alias_limit} nodes and "
                f"characters (at most its own length, or {MIN_ALIAS_EXPANSION})",
            )

    def _weight(self, node: Node) -> int:
        """1 per node plus the characters of its scalars, aliases expanded (memoized)."""
        known = self._weights.get(id(node))
        if known is not None:
            return known
        if isinstance(node, ScalarNode):
            weight = 1 + len(node.value)
        elif isinstance(node, SequenceNode):
            weight = 1 + sum(self._weight(item) for item in node.value)
        elif isinstance(node, MappingNode):
            weight = 1 + sum(self._weight(k) + self._weight(v) for k, v in node.value)
        else:
            weight = 1
        self._weights[id(node)] = weight
        return weight


def read_documents(text: str) -> Iterator[tuple[Node, Any]]:
    """(root node, plain value) of every document of `text`, in order, read once.

    Empty documents (a stray or trailing `---`, or `null`) are skipped. Raises
    `yaml.YAMLError` (`LimitExceeded` for the bounds) where the stream goes wrong; the
    documents before it have been handed out.
    """
    loader = _BoundedLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            value = loader.construct_document(node)
            if value is not None:
                yield node, value
    finally:
        loader.dispose()
