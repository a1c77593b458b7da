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

A load runs as its own task, so it outlives a caller that goes away (a client
disconnect, a timeout): the other callers still await it. It must not outlive
what it uses, though: :class:`LoadsInFlight` keeps every load of a runtime's
single flights, and the runtime settles them (refuses new ones, awaits or at
last cancels those running) before it stops the audit writer and disposes the
engine they write through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

import structlog

from gateway.errors import DatabaseUnavailable

__all__ = ["LoadsInFlight", "SingleFlight"]

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadsInFlight:
    """Every load started by the single flights that share this object, until it ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._settling = False

    def start(self, load: Coroutine[Any, Any, V], *, name: str | None = None) -> asyncio.Task[V]:
        """``load`` as a task, kept until it ends; refused (503) once settling began."""
        if self._settling:
            load.close()  # never started: no "coroutine was never awaited" warning
            raise DatabaseUnavailable("the gateway is shutting down")
        task = asyncio.create_task(load, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self, grace: float) -> None:
        """Refuse new loads; await those in flight for up to ``grace`` seconds, then cancel
        the rest and await their clean-up (a rollback, a connection checked in)."""
        self._settling = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        if pending:
            log.warning(
                "loads.abandoned",
                count=len(pending),
                loads=sorted(task.get_name() for task in pending),
                grace=grace,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)


class SingleFlight(Generic[K, V]):
    """At most one load per key at a time; concurrent callers await the same load."""

    def __init__(self, loads: LoadsInFlight | None = None) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}
        self._loads = LoadsInFlight() if loads is None else loads

    async def run(
        self, key: K, load: Callable[[], Coroutine[Any, Any, V]], *, name: str | None = None
    ) -> V:
        """The result (or the exception) of the load in flight for ``key``, or of a new one."""
        task = self._inflight.get(key)
        if task is None:
            task = self._loads.start(load(), name=name)
            self._inflight[key] = task
            task.add_done_callback(partial(self._done, key))
        # Shielded: a caller that goes away (client disconnect, timeout) must not
        # cancel the load the other callers await.
        return await asyncio.shield(task)

    def in_flight(self, key: K) -> bool:
        """Whether a :meth:`run` for ``key`` now would join a load rather than start one."""
        return key in self._inflight

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
