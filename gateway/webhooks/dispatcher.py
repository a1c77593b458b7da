"""Delivering the outbox: a background task per process, safe with many replicas.

Each round a dispatcher claims a batch of due deliveries in one short write
transaction — ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
claim disjoint rows without waiting on each other; SQLite's single writer
(``BEGIN IMMEDIATE``) serializes claims — and moves each claimed row's
``next_attempt_at`` one lease ahead. It then posts outside any transaction.
If the process dies mid-delivery the lease runs out and another dispatcher
retries: delivery is at least once, and receivers drop duplicates by the
``Linkgate-Event-Id`` header.

Every attempt is recorded (status code or error, duration, next attempt).
A 2xx settles the delivery; anything else (including a redirect, which is not
followed) schedules the next attempt with exponential backoff and jitter,
until ``max_attempts`` have failed and the delivery is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.webhooks.outbox import WebhookOutbox
from gateway.webhooks.signature import SIGNATURE_HEADER, signature_header
from gateway.webhooks.tables import DeliveryState, WebhookTables

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_ATTEMPTS",
    "DeliveryPolicy",
    "WebhookDispatcher",
    "next_delay",
    "open_webhooks",
]

log = structlog.get_logger("gateway.webhooks")

DEFAULT_MAX_ATTEMPTS = 12
DEFAULT_BACKOFF = 30.0  # seconds before the second attempt; doubles per failure
DEFAULT_MAX_BACKOFF = 6 * 3600.0  # 30 s … 6 h: twelve attempts span about 14 hours
DEFAULT_TIMEOUT = 10.0  # seconds for one whole attempt
DEFAULT_POLL_INTERVAL = 1.0  # seconds between looks at the outbox
DEFAULT_BATCH = 20
LEASE_MARGIN = 30.0  # seconds beyond the timeout before a claimed delivery may be retaken
USER_AGENT = "Linkgate-Webhooks/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    batch: int = DEFAULT_BATCH


def next_delay(
    attempt: int, policy: DeliveryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds after failed ``attempt`` (1-based) before the next: exponential, half jittered.

    The jitter spreads the retries of many events that failed together (one
    receiver outage) so they do not return as one burst.
    """
    ceiling = min(policy.max_backoff, policy.backoff * float(2 ** (attempt - 1)))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    event_type: str
    body: str
    attempt: int


@dataclass(frozen=True, slots=True)
class _Result:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookDispatcher:
    """Claims due deliveries, posts them signed, records each attempt."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,  # marked for writing (gateway.storage.writer)
        tables: WebhookTables,
        url: str,
        secret: str,
        http: httpx.AsyncClient,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._t = tables
        self._url = url
        self._secret = secret
        self._http = http
        self._policy = policy
        self._clock = clock

    async def run(self) -> None:
        """Deliver until cancelled; a database hiccup costs one round, not the task."""
        while True:
            try:
                wait = await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("webhook.dispatch_failed", error=type(exc).__name__)
                wait = self._policy.poll_interval
            await asyncio.sleep(wait)

    async def run_once(self) -> float:
        """One round; returns how long to wait before the next."""
        claimed = await self._claim()
        if not claimed:
            return self._policy.poll_interval
        delays = await asyncio.gather(*(self._deliver(item) for item in claimed))
        if len(claimed) == self._policy.batch:
            return 0.0  # more may be due right now
        retries = [delay for delay in delays if delay is not None]
        return min([self._policy.poll_interval, *retries])

    async def _claim(self) -> list[_Claimed]:
        d = self._t.deliveries
        now = self._clock()
        lease = now + timedelta(seconds=self._policy.timeout + LEASE_MARGIN)
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(d.c.id, d.c.event_type, d.c.body, d.c.attempts)
                    .where(d.c.state == DeliveryState.PENDING, d.c.next_attempt_at <= now)
                    .order_by(d.c.next_attempt_at)
                    .limit(self._policy.batch)
                    # Replicas skip rows another one holds (PostgreSQL); SQLite has
                    # no row locks and serializes this transaction with BEGIN IMMEDIATE.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            claimed = [_Claimed(r.id, r.event_type, r.body, r.attempts + 1) for r in rows]
            for item in claimed:
                await conn.execute(
                    update(d)
                    .where(d.c.id == item.id)
                    .values(attempts=item.attempt, next_attempt_at=lease)
                )
        return claimed

    async def _post(self, item: _Claimed) -> _Result:
        body = item.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Linkgate-Event-Id": item.id,
            "Linkgate-Event-Type": item.event_type,
            SIGNATURE_HEADER: signature_header(self._secret, int(time.time()), body),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self._policy.timeout):
                # Streamed and never read: a receiver's answer is its status code.
                async with self._http.stream(
                    "POST", self._url, content=body, headers=headers
                ) as response:
                    status_code = response.status_code
        except TimeoutError:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = type(exc).__name__  # not str(exc): it may carry the URL and its credentials
        if status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        return _Result(status_code, error, int((time.monotonic() - started) * 1000))

    async def _deliver(self, item: _Claimed) -> float | None:
        """Post one delivery and record the attempt; returns the retry delay, if any."""
        attempted_at = self._clock()
        result = await self._post(item)
        now = self._clock()
        delay: float | None = None
        values: dict[str, object] = {
            "last_status_code": result.status_code,
            "last_error": result.error,
        }
        if result.ok:
            values |= {
                "state": DeliveryState.DELIVERED,
                "delivered_at": now,
                "next_attempt_at": None,
            }
        elif item.attempt >= self._policy.max_attempts:
            values |= {"state": DeliveryState.ABANDONED, "next_attempt_at": None}
        else:
            delay = next_delay(item.attempt, self._policy)
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
        d, a = self._t.deliveries, self._t.attempts
        async with self._engine.begin() as conn:
            await conn.execute(
                a.insert().values(
                    delivery_id=item.id,
                    attempt=item.attempt,
                    attempted_at=attempted_at,
                    duration_ms=result.duration_ms,
                    status_code=result.status_code,
                    error=result.error,
                    next_attempt_at=values["next_attempt_at"],
                )
            )
            # Only while our claim stands: a lease that ran out belongs to someone else.
            await conn.execute(
                update(d).where(d.c.id == item.id, d.c.attempts == item.attempt).values(values)
            )
        fields = {
            "event_id": item.id,
            "event_type": item.event_type,
            "attempt": item.attempt,
            "status_code": result.status_code,
        }
        if result.ok:
            log.info("webhook.delivered", **fields)
        elif delay is None:
            log.error("webhook.abandoned", error=result.error, **fields)
        else:
            log.warning("webhook.attempt_failed", error=result.error, retry_in=delay, **fields)
        return delay


@contextlib.asynccontextmanager
async def open_webhooks(
    engine: AsyncEngine,
    tables: WebhookTables,
    *,
    url: str,
    secret: str,
    policy: DeliveryPolicy,
) -> AsyncIterator[WebhookOutbox]:
    """The outbox, and its dispatcher running in the background while the context is open.

    No ``url`` means webhooks are off: the outbox records nothing and nothing runs.
    """
    if not url:
        yield WebhookOutbox.disabled()
        return
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout, connect=min(5.0, policy.timeout)),
        limits=httpx.Limits(max_connections=policy.batch, max_keepalive_connections=4),
        follow_redirects=False,
    ) as http:
        dispatcher = WebhookDispatcher(
            engine=engine, tables=tables, url=url, secret=secret, http=http, policy=policy
        )
        task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
        try:
            yield WebhookOutbox(tables)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
