"""The checked-in seed corpus (`corpus/*.bin`) replayed through RequestReader: each file
gets the status its name gives, whether it arrives whole, one byte at a time or cut in
three, and a refused file delivers nothing when it arrives whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.proxy.http1.support import (
    Recorder,
    bytewise,
    check_framing,
    corpus_files,
    expected_status,
    pieces,
)

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.reader import RequestReader

FILES = list(corpus_files())


def replay(chunks: list[bytes]) -> tuple[int | None, Recorder, bytes | None]:
    """(refusal status or None, what was delivered, the bytes handed to a tunnel)."""
    rec = Recorder()
    reader = RequestReader(rec)
    for i, chunk in enumerate(chunks):
        try:
            rest = reader.feed(chunk)
        except ProtocolError as e:
            return e.status, rec, None
        if rest is not None:
            return None, rec, rest + b"".join(chunks[i + 1 :])
    return None, rec, None


def cuttings(data: bytes) -> list[list[bytes]]:
    n = len(data)
    small = bytewise(data) if n <= 4096 else pieces(data, range(0, n, 1021))
    return [[data], small, pieces(data, (n // 3, 2 * n // 3)), pieces(data, (1, n - 1))]


def test_the_corpus_is_there() -> None:
    names = {f.name for f in FILES}
    assert len(FILES) >= 40
    for issue_case in (
        "400-content-length-and-transfer-encoding.bin",
        "400-two-different-content-lengths.bin",
        "400-bad-chunk-size.bin",
        "400-header-without-colon.bin",
        "431-oversized-headers.bin",
    ):
        assert issue_case in names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_corpus_file(path: Path) -> None:
    data = path.read_bytes()
    expected = expected_status(path)
    outcomes = []
    for chunks in cuttings(data):
        status, rec, tunnel = replay(chunks)
        assert status == expected, (path.name, len(chunks), status)
        if status is None:
            messages = rec.messages
            assert messages, path.name
            check_framing(messages)
            outcomes.append(
                ([(m.request.method, m.request.target, m.body) for m in messages], tunnel)
            )
        elif len(chunks) == 1:
            assert rec.events == [], path.name
    assert all(o == outcomes[0] for o in outcomes), path.name
