"""A small per-provider circuit breaker: stop calling a provider that is down.

Closed: calls pass; ``threshold`` consecutive transient failures open it.
Open: calls fail fast with 503 until ``cool_off`` seconds have passed.
Half-open: one probe passes; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.errors import UpstreamUnavailable

DEFAULT_THRESHOLD = 5
DEFAULT_COOL_OFF = 30.0


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        cool_off: float = DEFAULT_COOL_OFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._cool_off = cool_off
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def before(self) -> None:
        """Raise ``UpstreamUnavailable`` unless a call may go out now."""
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited < self._cool_off or self._probing:
            remaining = max(1, int(self._cool_off - waited) + 1)
            raise UpstreamUnavailable(
                f"{self.name} is failing; calls are paused",
                headers={"Retry-After": str(remaining)},
            )
        self._probing = True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._probing = False
