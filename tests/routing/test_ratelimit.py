"""TokenBucket, pure: starts full, refills whole fills per interval up to the maximum,
refuses when empty, and says so in the draft-03 rate-limit headers."""

from __future__ import annotations

import pytest

from trellis.routing.ratelimit import TokenBucket


def test_a_full_bucket_admits_max_tokens_then_refuses() -> None:
    bucket = TokenBucket(max_tokens=3, tokens_per_fill=1, fill_interval=1.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_whole_fills_only_and_never_beyond_the_maximum() -> None:
    bucket = TokenBucket(max_tokens=2, tokens_per_fill=1, fill_interval=1.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.9)
    assert bucket.take(1.0)
    assert not bucket.take(1.5)
    assert bucket.take(100.0) and bucket.take(100.0) and not bucket.take(100.0)


def test_rate_over_a_long_burst_is_tokens_per_fill_per_interval() -> None:
    bucket = TokenBucket(max_tokens=20, tokens_per_fill=20, fill_interval=1.0)
    admitted = sum(bucket.take(i / 200) for i in range(200 * 5))  # 200 rps for 5 s
    assert admitted == 20 * 5


def test_headers_say_limit_remaining_reset_and_retry_after_when_refused() -> None:
    bucket = TokenBucket(max_tokens=1, tokens_per_fill=1, fill_interval=2.0)
    assert bucket.take(10.0)
    assert not bucket.take(10.5)
    headers = dict(bucket.headers(10.5, limited=True))
    assert headers == {
        b"x-ratelimit-limit": b"1",
        b"x-ratelimit-remaining": b"0",
        b"x-ratelimit-reset": b"2",
        b"retry-after": b"2",
    }
    assert b"retry-after" not in dict(bucket.headers(10.5, limited=False))


@pytest.mark.parametrize("args", [(0, 1, 1.0), (1, 0, 1.0), (1, 1, 0.0)])
def test_a_bucket_that_could_never_admit_is_refused(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(*args)
