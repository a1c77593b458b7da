"""Runs processor requests step by step, resumably.

For one claimed request: read the steps already recorded, run the others in
order, and record each one done in one transaction with its
``processor_request.step`` audit event (into the audit outbox, appended to the
chain right after the commit) and, for a step that is a database change, the
change itself (:meth:`~gateway.processor_requests.store.RequestStore.complete_step`);
a step that must read first (the portability fetch) prepares its change
outside the transaction and makes it inside.
A restart (another replica, after the lease lapses) skips what is recorded,
so no step is recorded, or its event appended, twice. A step that acts on its
own (it calls a provider, so its effect cannot share the transaction) and ran
but was not yet recorded runs again and is idempotent
(:mod:`~gateway.processor_requests.steps`); its event is still written once,
with its completion mark.

A step that fails is retried later (the lease is set to lapse after a
back-off), up to ``max_attempts``; then the request is ``failed`` with the
problem type as its reason (never a message that might quote data). A step
that refuses the request (bad input found while running) rejects it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import BadRequest, LinkgateError
from gateway.processor_requests.machine import Status
from gateway.processor_requests.steps import Output, Services, Step, result_of, steps_for
from gateway.processor_requests.store import DEFAULT_LEASE, ProcessorRequest, StepChange
from gateway.vault import VaultError

__all__ = ["DEFAULT_MAX_ATTEMPTS", "Runner"]

log = structlog.get_logger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_DELAY = timedelta(minutes=1)

Progress = Callable[[ProcessorRequest, str, int, int], None]


class Runner:
    def __init__(
        self,
        services: Services,
        *,
        lease: timedelta = DEFAULT_LEASE,
        retry_delay: timedelta = DEFAULT_RETRY_DELAY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        progress: Progress | None = None,
    ) -> None:
        self._services = services
        self._store = services.store
        self._lease = lease
        self._retry_delay = retry_delay
        self._max_attempts = max_attempts
        self._progress = progress

    async def run_next(self, *, request_id: str | None = None) -> ProcessorRequest | None:
        """Claim and run one due request; None when there is none."""
        request = await self._store.claim(lease=self._lease, request_id=request_id)
        if request is None:
            return None
        return await self.run(request)

    async def run_all(self) -> list[ProcessorRequest]:
        """Run due requests until none is left; what each ended as."""
        finished: list[ProcessorRequest] = []
        while (request := await self.run_next()) is not None:
            finished.append(request)
        return finished

    async def run(
        self, request: ProcessorRequest, *, max_steps: int | None = None
    ) -> ProcessorRequest:
        """Run the remaining steps of a claimed request.

        ``max_steps`` stops after that many steps as if the process died there
        (the lease stays held until it lapses): a deliberate pause point for
        time-sliced runs and for proving resumption.
        """
        store = self._store
        done = await store.done_steps(request.id)
        plan = steps_for(request)
        ran = 0
        for index, step in enumerate(plan, start=1):
            if step.name in done:
                continue
            if max_steps is not None and ran >= max_steps:
                return request
            if self._progress:
                self._progress(request, step.name, index, len(plan))
            try:
                output = await self._complete(request, step, done)
            except BadRequest as exc:
                return await self._finish(request, Status.REJECTED, reason=exc.detail)
            except (LinkgateError, SQLAlchemyError, VaultError, OSError) as exc:
                return await self._later(request, step.name, exc)
            if output is None:  # a concurrent resume recorded it first: take its output
                output = (await store.done_steps(request.id))[step.name]
            done[step.name] = dict(output)
            ran += 1
            await store.extend(request, self._lease)
        return await self._finish(
            request, Status.COMPLETED, result=result_of(request, done, store.clock())
        )

    async def _complete(
        self, request: ProcessorRequest, step: Step, done: Mapping[str, Output]
    ) -> Mapping[str, Any] | None:
        """Run ``step`` and record it; its output, or None if it was already recorded."""
        services = self._services
        change: StepChange
        if step.change is not None:
            step_change = step.change

            async def change(conn: AsyncConnection) -> Output:
                return await step_change(services, request, done, conn)
        elif step.prepare is not None:
            change = await step.prepare(services, request, done)
        else:
            assert step.run is not None  # Step holds exactly one of the three
            output = await step.run(services, request, done)

            async def change(_conn: AsyncConnection) -> Output:
                return output

        return await self._store.complete_step(
            request, step.name, change, actor_id=request.id, actor_class=request.filed_class
        )

    async def _later(
        self, request: ProcessorRequest, step: str, exc: Exception
    ) -> ProcessorRequest:
        problem = exc.problem if isinstance(exc, LinkgateError) else type(exc).__name__
        attempts = await self._store.retry_later(request, self._retry_delay)
        log.warning(
            "processor_request.step_failed",
            request_id=request.id,
            step=step,
            problem=problem,
            attempts=attempts,
        )
        if attempts >= self._max_attempts:
            return await self._finish(
                request, Status.FAILED, reason=f"step {step} failed: {problem}"
            )
        return request

    async def _finish(
        self,
        request: ProcessorRequest,
        status: Status,
        *,
        result: dict[str, object] | None = None,
        reason: str | None = None,
    ) -> ProcessorRequest:
        finished = await self._store.finish(
            request,
            status,
            result=result,
            reason=reason,
            actor_id=request.id,
            actor_class=request.filed_class,
        )
        log.info("processor_request.finished", request_id=request.id, status=status.value)
        return finished
