"""Token buckets: ``burst`` requests at once, then ``rate`` per second, one bucket per key.

:class:`TokenBucket` is the pure core over a given clock. :class:`TokenBuckets`
keeps one per key in bounded memory: past ``max_tracked`` keys the least
recently seen bucket is forgotten, so a stream of new keys (random credentials,
many addresses) cannot grow it. A forgotten key starts again with a full burst,
which is the price of the bound. Buckets live in the process: N replicas allow
N times the rate.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_TRACKED", "TokenBucket", "TokenBuckets"]

DEFAULT_MAX_TRACKED = 10_000  # keys with a bucket; an attacker's random keys cannot grow it

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class TokenBucket:
    """``burst`` requests at once, then ``rate`` per second; a pure core over a given clock."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class TokenBuckets(Generic[K]):
    """A :class:`TokenBucket` per key, the least recently seen forgotten past ``max_tracked``."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self.clock = clock
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: K) -> float:
        """Take one token from ``key``'s bucket; 0.0 when granted, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, float(self.burst), float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)
