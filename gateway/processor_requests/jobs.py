"""The background work ``serve`` runs: processor requests as they are verified, and the purge.

Every replica may run both. Requests are claimed ``FOR UPDATE SKIP LOCKED``
(:meth:`~gateway.processor_requests.store.RequestStore.claim`), so replicas
share the queue without taking one request twice; each purge statement
deletes only what is still there. A route that verifies a request wakes the
local runner so a request does not wait for the next poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import structlog
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import LinkgateError
from gateway.processor_requests.purge import purge
from gateway.processor_requests.runner import Runner
from gateway.processor_requests.steps import Services
from gateway.processor_requests.store import RequestStore
from gateway.runtime import Runtime
from gateway.storage.schema import processor_request_tables

__all__ = [
    "PURGE_INTERVAL",
    "RUN_INTERVAL",
    "ProcessorJobs",
    "processor_jobs",
    "request_store",
    "services",
]

log = structlog.get_logger(__name__)

RUN_INTERVAL = 5.0  # seconds between polls for verified requests
PURGE_INTERVAL = 3600.0  # seconds between retention purges


def request_store(runtime: Runtime) -> RequestStore:
    return RequestStore(
        runtime.engine,
        processor_request_tables,
        vault=runtime.vault,
        hasher=runtime.subjects,
        outbox=runtime.audit_outbox,
    )


def services(runtime: Runtime) -> Services:
    return Services(
        store=request_store(runtime),
        records=runtime.records,
        connections=runtime.connections,
        providers=runtime.providers,
        oauth_http=runtime.oauth_http,
        audit_store=runtime.audit_store,
        audit=runtime.audit,
        suppressions=runtime.suppressions,
        consents=runtime.consents,
        hasher=runtime.subjects,
        engine=runtime.engine,
    )


class ProcessorJobs:
    """The runner loop and the purge loop of one process."""

    def __init__(self, runtime: Runtime, *, run_interval: float, purge_interval: float) -> None:
        self._runtime = runtime
        self._runner = Runner(services(runtime))
        self._wake = asyncio.Event()
        self._run_interval = run_interval
        self._purge_interval = purge_interval

    def wake(self) -> None:
        """Look for due requests now."""
        self._wake.set()

    async def run_loop(self) -> None:
        while True:
            try:
                await self._runner.run_all()
            except (LinkgateError, SQLAlchemyError, OSError) as exc:
                log.warning("processor_request.runner_failed", problem=type(exc).__name__)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._run_interval)
            self._wake.clear()

    async def purge_loop(self) -> None:
        runtime = self._runtime
        while True:
            try:
                await purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy)
            except (LinkgateError, SQLAlchemyError, OSError) as exc:
                log.warning("retention.purge_failed", problem=type(exc).__name__)
            await asyncio.sleep(self._purge_interval)


@asynccontextmanager
async def processor_jobs(
    runtime: Runtime,
    *,
    run_interval: float = RUN_INTERVAL,
    purge_interval: float = PURGE_INTERVAL,
) -> AsyncIterator[ProcessorJobs]:
    """Run both loops for as long as the app runs."""
    jobs = ProcessorJobs(runtime, run_interval=run_interval, purge_interval=purge_interval)
    tasks = [
        asyncio.create_task(jobs.run_loop(), name="processor-requests"),
        asyncio.create_task(jobs.purge_loop(), name="retention-purge"),
    ]
    try:
        yield jobs
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
