"""Test doubles for the HTTP/1.1 codec: handlers that record what the readers deliver, and
helpers that feed bytes in chosen pieces.

`Message` is what one request or response amounts to once its body pieces are joined, so
that tests compare messages, not how llhttp happened to cut the body.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead, ResponseHead
from trellis.proxy.http1.reader import RequestReader, ResponseReader

CORPUS = Path(__file__).parent / "corpus"


@dataclass
class Message:
    head: RequestHead | ResponseHead
    body: bytes = b""
    complete: bool = False

    @property
    def request(self) -> RequestHead:
        assert isinstance(self.head, RequestHead)
        return self.head

    @property
    def response(self) -> ResponseHead:
        assert isinstance(self.head, ResponseHead)
        return self.head


@dataclass
class Recorder:
    """A RequestHandler and ResponseHandler that keeps every event, in order."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def on_request(self, head: RequestHead) -> None:
        self.events.append(("head", head))

    def on_response(self, head: ResponseHead) -> None:
        self.events.append(("head", head))

    def on_body(self, data: bytes) -> None:
        assert isinstance(data, bytes) and data, data
        self.events.append(("body", data))

    def on_request_end(self) -> None:
        self.events.append(("end", None))

    def on_response_end(self) -> None:
        self.events.append(("end", None))

    @property
    def messages(self) -> list[Message]:
        """The events as messages; fails if they do not come as (head, body*, end)*."""
        out: list[Message] = []
        for kind, value in self.events:
            if kind == "head":
                assert not out or out[-1].complete, f"a head inside a message: {self.events}"
                assert isinstance(value, RequestHead | ResponseHead)
                out.append(Message(value))
            else:
                assert out and not out[-1].complete, f"{kind} outside a message: {self.events}"
                if kind == "body":
                    assert isinstance(value, bytes)
                    out[-1].body += value
                else:
                    out[-1].complete = True
        return out


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at the given offsets (sorted, out-of-range ones ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def read_requests(chunks: Sequence[bytes], **kw: int) -> Recorder:
    """Feed `chunks` to a fresh RequestReader; ProtocolError propagates."""
    rec = Recorder()
    reader = RequestReader(rec, **kw)
    for chunk in chunks:
        reader.feed(chunk)
    return rec


def request_messages(data: bytes | Sequence[bytes]) -> list[Message]:
    chunks = [data] if isinstance(data, bytes) else list(data)
    return read_requests(chunks).messages


def refusal(data: bytes | Sequence[bytes]) -> tuple[ProtocolError, Recorder]:
    """The ProtocolError that `data` raises, and what was delivered before it."""
    chunks = [data] if isinstance(data, bytes) else list(data)
    rec = Recorder()
    reader = RequestReader(rec)
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except ProtocolError as e:
        return e, rec
    raise AssertionError(f"accepted: {rec.events}")


def read_responses(
    exchanges: Iterable[tuple[bool, Sequence[bytes]]], *, eof: bool = False
) -> tuple[Recorder, ResponseReader]:
    """One ResponseReader; for each (head_request, chunks): `expect`, then feed the chunks."""
    rec = Recorder()
    reader = ResponseReader(rec)
    for head_request, chunks in exchanges:
        reader.expect(head_request)
        for chunk in chunks:
            reader.feed(chunk)
    if eof:
        reader.eof()
    return rec, reader


def corpus_files() -> Iterator[Path]:
    yield from sorted(CORPUS.glob("*.bin"))


def expected_status(path: Path) -> int | None:
    """`400-name.bin` must be refused with 400; `ok-name.bin` must be accepted."""
    prefix = path.name.split("-", 1)[0]
    return None if prefix == "ok" else int(prefix)


def check_framing(messages: Sequence[Message]) -> None:
    """What each accepted request's head says about its body is what its events carried:
    a proxy that re-frames the body from the head must send exactly these bytes."""
    for m in messages:
        if not m.complete:
            continue
        head = m.request
        if head.chunked:
            assert head.content_length is None
        elif head.content_length is not None:
            assert len(m.body) == head.content_length, (head, len(m.body))
        else:
            assert m.body == b"", (head, m.body[:100])
