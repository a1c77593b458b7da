"""When to retry a provider call and how long to wait (pure functions and a policy value)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

DEFAULT_ATTEMPTS = 4
DEFAULT_DEADLINE = 10.0  # seconds for all attempts of one call together
DEFAULT_INITIAL_BACKOFF = 0.2
DEFAULT_MAX_BACKOFF = 4.0
DEFAULT_RETRY_AFTER = 1  # what a 503/429 problem announces when the provider said nothing

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# X answers a pay-per-use cap with this problem type; it is not transient
# (providers-reference, X "Errors and rate limits"): never retried.
USAGE_CAPPED_TYPES = frozenset({"https://api.x.com/2/problems/usage-capped"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter under a total deadline."""

    attempts: int = DEFAULT_ATTEMPTS
    deadline: float = DEFAULT_DEADLINE
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF


def retry_delay(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the provider asked us to wait, or None when it did not say.

    ``Retry-After`` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3);
    ``x-rate-limit-reset`` is the epoch second the window reopens (X).
    """
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = headers.get("x-rate-limit-reset")
    if reset is not None and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return None


def announced(delay: float | None) -> str:
    """A Retry-After value for our own 429/503 problems: whole seconds, at least 1."""
    return str(max(1, math.ceil(delay)) if delay is not None else DEFAULT_RETRY_AFTER)


def is_usage_capped(status: int, body: bytes) -> bool:
    """A 429 that says a usage cap, not a rate window, was hit."""
    if status != 429 or not body:
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    kind = parsed.get("type")
    return (isinstance(kind, str) and kind in USAGE_CAPPED_TYPES) or parsed.get(
        "title"
    ) == "UsageCapExceeded"
