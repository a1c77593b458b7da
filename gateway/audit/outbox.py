"""The audit outbox: an event committed by the transaction that makes its change.

Most paths write their audit event before they act, and fail closed (503
audit-unavailable) when they cannot. A few must commit first: a refreshed
token (a rotated refresh token is single use, RFC 9700 §4.14.2, so it is
stored the moment the provider answers), a linked connection, a disconnected
one (revoked at the provider before its status changes; a caller that skips
an already revoked connection on retry must neither lose nor repeat its
event), a consent withdrawal or a suppression (these three end a use of
data, so they take effect even when the audit log is down), a processor
request filed, verified or finished (a second filing meets the first one's
duplicate check), a processor request's step recorded done (with the step's
own database change, if any: a resumed request skips it, so its event must
not be appended twice or lost), a retention purge's deletions (privacy
notice, "Data retention": they happen on schedule, audit log or not).
Appending their event after the commit would lose it to a crash or a failed
append while the change stood.

So such a path writes its draft into ``audit_outbox`` with :meth:`AuditOutbox.add`
inside its own transaction (the transactional outbox, as the webhooks do in
:mod:`gateway.webhooks.outbox`): the change and its event are committed
together or not at all. After the commit it hands the entry to the
group-commit writer with :meth:`AuditOutbox.deliver`, which waits for the
chain append as any other event does; the append deletes the outbox row in
its own transaction (:meth:`~gateway.audit.store.AuditStore.append_outboxed`).
If that append fails, the change stands, its event is durable in the outbox,
and the caller carries on: :meth:`AuditOutbox.drain` appends what is left,
at startup and then periodically, on any replica (PostgreSQL rows are taken
``FOR UPDATE SKIP LOCKED``; SQLite has one writer), each entry exactly once.

An outboxed event keeps the time it was written (when its change committed)
unless its customer's chain has already moved past it; see
:meth:`~gateway.audit.store.AuditStore.append_outboxed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.errors import AuditUnavailable
from gateway.audit.event import AuditEvent, EventDraft, OutboxEntry
from gateway.audit.store import AuditStore
from gateway.audit.tables import AuditTables
from gateway.audit.writer import AuditWriter

__all__ = [
    "DEFAULT_DRAIN_BATCH",
    "AuditOutbox",
    "decode_draft",
    "encode_draft",
]

log = structlog.get_logger("gateway.audit")

DEFAULT_DRAIN_BATCH = 200

_DRAFT_NAMES = tuple(f.name for f in fields(EventDraft))


def encode_draft(draft: EventDraft) -> str:
    """The draft's fields as JSON (enum members as their values, tuples as arrays)."""
    return json.dumps(
        {name: getattr(draft, name) for name in _DRAFT_NAMES},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_draft(text: str) -> EventDraft:
    """The inverse of :func:`encode_draft`; the draft validates itself again.

    Raises ``ValueError`` for a row that is not a draft (so a tampered row
    cannot put a clear identifier into the chain either).
    """
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != set(_DRAFT_NAMES):
        raise ValueError("not an event draft")
    return EventDraft(**data)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditOutbox:
    """Adds drafts to the outbox in a caller's transaction, delivers them, drains leftovers."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: AuditTables,
        store: AuditStore,
        writer: AuditWriter,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """``engine`` reads the outbox for drains (the store's ``read_engine`` will do)."""
        self._engine = engine
        self._outbox = tables.outbox
        self._store = store
        self._writer = writer
        self._clock = clock

    async def add(self, conn: AsyncConnection, draft: EventDraft) -> OutboxEntry:
        """Insert ``draft`` in ``conn``'s open transaction; deliver the entry after the commit."""
        entry = OutboxEntry(
            id=f"aob_{secrets.token_hex(16)}", draft=draft, written_at=self._clock()
        )
        await conn.execute(
            self._outbox.insert().values(
                id=entry.id,
                customer_id=draft.customer_id,
                written_at=entry.written_at,
                draft=encode_draft(draft),
            )
        )
        return entry

    async def deliver(self, entry: OutboxEntry) -> AuditEvent | None:
        """Append a committed entry; its event, or ``None`` if a drain got there first
        or the append failed (logged: the entry waits in the outbox for the drain).

        Never raises :class:`AuditUnavailable`: the change is committed and its
        event durable either way, so failing the caller would report as
        failed something that happened.
        """
        try:
            return await self._writer.record_outboxed(entry)
        except AuditUnavailable as exc:
            log.warning(
                "audit.outboxed",
                entry_id=entry.id,
                customer_id=entry.draft.customer_id,
                action=str(entry.draft.action),
                error=str(exc),
            )
            return None

    async def drain(
        self, *, written_before: datetime | None = None, batch: int = DEFAULT_DRAIN_BATCH
    ) -> int:
        """Append the entries written up to ``written_before`` (default: now); how many.

        One pass in outbox order (``written_at``, then ``id``): an entry another
        transaction holds, or one already appended meanwhile, is passed over
        (the holder appends it, or the next drain does). Raises
        :class:`AuditUnavailable` when the store cannot be read or written.
        """
        cutoff = written_before or self._clock()
        o = self._outbox
        after: tuple[datetime, str] | None = None
        appended = 0
        while True:
            query = (
                select(o.c.id, o.c.written_at, o.c.draft)
                .where(o.c.written_at <= cutoff)
                .order_by(o.c.written_at, o.c.id)
                .limit(batch)
            )
            if after is not None:
                query = query.where(
                    or_(
                        o.c.written_at > after[0],
                        and_(o.c.written_at == after[0], o.c.id > after[1]),
                    )
                )
            try:
                async with self._engine.connect() as conn:
                    rows = (await conn.execute(query)).all()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                raise AuditUnavailable(f"audit outbox read failed: {type(exc).__name__}") from exc
            if not rows:
                return appended
            after = (rows[-1].written_at, rows[-1].id)
            entries = [entry for entry in map(self._entry, rows) if entry is not None]
            events = await self._store.append_outboxed(entries, skip_locked=True)
            drained = sum(event is not None for event in events)
            appended += drained
            if drained:
                log.info("audit.outbox_drained", appended=drained)
            if len(rows) < batch:
                return appended

    @staticmethod
    def _entry(row: Any) -> OutboxEntry | None:
        try:
            draft = decode_draft(row.draft)
        except (ValueError, TypeError) as exc:
            # Left where it is for an operator: dropping it would lose an event.
            log.error("audit.outbox_unreadable", entry_id=row.id, error=type(exc).__name__)
            return None
        # A naive written_at (SQLite) is UTC; the store reads it so.
        return OutboxEntry(id=row.id, draft=draft, written_at=row.written_at)

    async def run(self, *, interval: float, grace: float) -> None:
        """Drain every ``interval`` seconds until cancelled; a failed round costs one round.

        Each round takes only entries older than ``grace`` seconds: younger ones
        belong to a writer that appends them within milliseconds (taking them
        would be correct too, only contended). Both come from the settings
        (``LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL`` and ``_GRACE``).
        """
        while True:
            await asyncio.sleep(interval)
            await self._drain_logged(self._clock() - timedelta(seconds=grace))

    async def _drain_logged(self, written_before: datetime) -> None:
        try:
            await self.drain(written_before=written_before)
        except AuditUnavailable as exc:
            log.warning("audit.outbox_drain_failed", error=str(exc))
        except Exception as exc:  # the drain must outlive any one round, as the writer does
            log.error("audit.outbox_drain_failed", error=type(exc).__name__)

    @contextlib.asynccontextmanager
    async def draining(self, *, interval: float, grace: float) -> AsyncIterator[AuditOutbox]:
        """Drain what an earlier process left, then keep draining in the background (:meth:`run`).

        The first drain runs before the block is entered, so a gateway serves
        nothing until the events a crash left behind are in the chain (or, if
        the audit store is down, a warning says the periodic drain will retry).
        """
        await self._drain_logged(self._clock())
        task = asyncio.create_task(self.run(interval=interval, grace=grace), name="audit-outbox")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
