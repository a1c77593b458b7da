"""Single-flight loads: concurrent misses on one key share one load.

The records hot path keeps a few short-lived caches (service keys, connection
rows, whether a customer has consents or suppressions). When an entry expires
under load, every request in flight misses it at the same moment; each used to
read the database itself, so 32 concurrent requests checked out 32 pooled
connections (past the pool's size, PostgreSQL forked a new backend for each)
to read the same row. Here the first miss starts the load and the others
await it.

A waiter gets a read that was still running when it arrived, so it is never
older than a cache hit would have been and no cache's staleness bound
loosens. A cache that learns of a change made by this process (its
``forget``) drops the load in flight for that key: a miss after the change
starts a new read instead of joining one that began before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one load per key at a time; concurrent callers await the same load."""

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, load: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The result (or the exception) of the load in flight for ``key``, or of a new one."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(load())
            self._inflight[key] = task
            task.add_done_callback(partial(self._done, key))
        # Shielded: a caller that goes away (client disconnect, timeout) must not
        # cancel the load the other callers await.
        return await asyncio.shield(task)

    def forget(self, key: K) -> None:
        """Later callers for ``key`` start a new load (the one in flight may be stale)."""
        self._inflight.pop(key, None)

    def forget_all(self) -> None:
        self._inflight.clear()

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a failed load nobody awaited is not reported as lost
