"""Pure rate-limit signal parsing."""

from __future__ import annotations

import pytest

from gateway.upstream import is_usage_capped, retry_delay

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Fri, 15 Jan 2027 08:00:10 GMT"}, 1_800_000_010.0 - NOW),
        ({"x-rate-limit-reset": "1800000030"}, 30.0),
        ({"x-rate-limit-reset": "1"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_delay_reads_retry_after_and_rate_limit_reset(
    headers: dict[str, str], expected: float | None
) -> None:
    """RFC 9110 §10.2.3 seconds or HTTP-date; X's x-rate-limit-reset epoch seconds."""
    assert expected == retry_delay(headers, now=NOW)


def test_usage_cap_is_told_apart_from_a_rate_window() -> None:
    """Only the usage-capped problem type (or title) counts as a cap."""
    capped = b'{"type": "https://api.x.com/2/problems/usage-capped", "status": 429}'
    assert is_usage_capped(429, capped)
    assert not is_usage_capped(429, b'{"title": "Too Many Requests", "type": "about:blank"}')
    assert not is_usage_capped(429, b"not json")
    assert not is_usage_capped(403, capped)
