"""Counters of what clients asked the sandbox, for tests to assert on (GET /_sandbox/stats)."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Named counters, e.g. ``token.authorization_code``; safe under concurrent requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Counters grouped by their prefix: ``{"token_requests": {"refresh_token": 2}, …}``."""
        with self._lock:
            counts = dict(self._counts)
        grouped: dict[str, dict[str, int]] = {}
        for name, value in sorted(counts.items()):
            group, _, key = name.partition(".")
            grouped.setdefault(f"{group}_requests", {})[key] = value
        return grouped
