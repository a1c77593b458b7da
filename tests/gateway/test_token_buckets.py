"""Token buckets per key, in bounded memory."""

from __future__ import annotations

from gateway.token_buckets import TokenBuckets


def test_each_key_has_its_own_bucket() -> None:
    """One key's burst used up leaves another key's untouched."""
    buckets: TokenBuckets[str] = TokenBuckets(rate=1.0, burst=1, clock=lambda: 0.0)

    assert [buckets.take("a"), buckets.take("a"), buckets.take("b")] == [0.0, 1.0, 0.0]


def test_past_max_tracked_the_least_recently_seen_key_is_forgotten() -> None:
    """Memory stays at max_tracked; a forgotten key starts again with a full burst."""
    buckets: TokenBuckets[str] = TokenBuckets(rate=0.001, burst=1, max_tracked=2, clock=lambda: 0.0)
    buckets.take("old")
    buckets.take("kept")
    buckets.take("kept")  # seen again: now the most recent
    buckets.take("new")

    assert len(buckets) == 2
    assert buckets.take("kept") > 0  # still remembered, still empty
    assert buckets.take("old") == 0.0  # forgotten, so full again
