"""Reading the audit log: filtered search, newest first, and whole chains for export."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import decode_event
from gateway.audit.errors import DATABASE_ERRORS, AuditUnavailable, ChainBroken
from gateway.audit.event import AuditEvent
from gateway.audit.tables import AuditTables

__all__ = [
    "DEFAULT_SEARCH_LIMIT",
    "EXPORT_BATCH",
    "MAX_SEARCH_LIMIT",
    "AuditCursor",
    "AuditPage",
    "AuditSearch",
]

DEFAULT_SEARCH_LIMIT = 50
MAX_SEARCH_LIMIT = 1000
EXPORT_BATCH = 2000  # events per read while streaming a chain


@dataclass(frozen=True, slots=True)
class AuditCursor:
    """Where a page ended: the search continues strictly after (older than) this event."""

    occurred_at: datetime
    customer_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: AuditCursor | None


class AuditSearch:
    """Search and export over the read engine (which never holds SQLite's write lock)."""

    def __init__(self, reader: AsyncEngine, tables: AuditTables) -> None:
        self._reader = reader
        self._t = tables

    async def search(
        self,
        customer_ids: Sequence[str],
        *,
        subject_hash: str | Sequence[str] | None = None,
        connection_id: str | None = None,
        caller_id: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: AuditCursor | None = None,
        limit: int = DEFAULT_SEARCH_LIMIT,
    ) -> AuditPage:
        """Events of ``customer_ids`` matching every filter given, newest first.

        ``since`` is inclusive, ``until`` exclusive; ``before`` is the previous
        page's ``next_cursor`` (keyset pagination: stable while events arrive).
        Subject hashes are per customer, so a subject search over several
        customers passes one hash per customer.
        """
        if not customer_ids:
            return AuditPage([], None)
        limit = max(1, min(limit, MAX_SEARCH_LIMIT))
        e, s = self._t.events, self._t.subjects
        query = select(e.c.customer_id, e.c.seq, e.c.content, e.c.prev_hash, e.c.hash)
        if subject_hash is not None:
            # Start from the subject's own rows (PK customer_id, subject_hash, seq),
            # then fetch each event by primary key and sort the few found. Left
            # to itself SQLite (no sqlite_stat1, and PRAGMA optimize on 3.40
            # creates none) walks ix_audit_events_time over all of the
            # customer's events probing audit_subjects per row: ~0.5 s at
            # 1,000,000 events. A MATERIALIZED CTE is computed once, before the
            # outer query (https://sqlite.org/lang_with.html#materialization_hints;
            # PostgreSQL: https://www.postgresql.org/docs/current/queries-with.html
            # "MATERIALIZED"), so neither planner can turn it into that walk.
            # Each hit carries its event's occurred_at: joined on it too, the
            # events are probed only in the partitions that hold them, and a
            # since/until bound on the hits prunes the subjects' partitions
            # (https://www.postgresql.org/docs/current/ddl-partitioning.html#DDL-PARTITION-PRUNING).
            hits = select(s.c.customer_id, s.c.seq, s.c.occurred_at).where(
                s.c.subject_hash.in_(
                    [subject_hash] if isinstance(subject_hash, str) else list(subject_hash)
                ),
                s.c.customer_id.in_(customer_ids),
            )
            if since is not None:
                hits = hits.where(s.c.occurred_at >= since.astimezone(UTC))
            if until is not None:
                hits = hits.where(s.c.occurred_at < until.astimezone(UTC))
            hits_cte = hits.cte("subject_hits").prefix_with("MATERIALIZED")
            query = query.select_from(
                hits_cte.join(
                    e,
                    and_(
                        e.c.customer_id == hits_cte.c.customer_id,
                        e.c.seq == hits_cte.c.seq,
                        e.c.occurred_at == hits_cte.c.occurred_at,
                    ),
                )
            )
        query = query.where(e.c.customer_id.in_(customer_ids))
        for column, value in (
            (e.c.connection_id, connection_id),
            (e.c.caller_id, caller_id),
            (e.c.action, action),
            (e.c.outcome, outcome),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(e.c.occurred_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(e.c.occurred_at < until.astimezone(UTC))
        if before is not None:
            at = before.occurred_at.astimezone(UTC)
            query = query.where(
                or_(
                    e.c.occurred_at < at,
                    and_(
                        e.c.occurred_at == at,
                        or_(
                            e.c.customer_id < before.customer_id,
                            and_(e.c.customer_id == before.customer_id, e.c.seq < before.seq),
                        ),
                    ),
                )
            )
        query = query.order_by(
            e.c.occurred_at.desc(), e.c.customer_id.desc(), e.c.seq.desc()
        ).limit(limit + 1)
        try:
            async with self._reader.connect() as conn:
                rows = (await conn.execute(query)).all()
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit search failed: {type(exc).__name__}") from exc
        events = [self._decode_for_reading(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and events:
            last = events[-1]
            next_cursor = AuditCursor(last.occurred_at, last.customer_id, last.seq)
        return AuditPage(events, next_cursor)

    @staticmethod
    def _decode_for_reading(row: Any) -> AuditEvent:
        try:
            event = decode_event(row.content, prev_hash=row.prev_hash, hash=row.hash)
        except ValueError as exc:
            raise ChainBroken(f"event {row.seq} of {row.customer_id} is unreadable") from exc
        if (event.customer_id, event.seq) != (row.customer_id, row.seq):
            raise ChainBroken(f"row {row.seq} of {row.customer_id} holds another event")
        return event

    async def events(self, customer_id: str, *, after_seq: int = 0) -> AsyncIterator[AuditEvent]:
        """All of a customer's events in chain order, for export; streamed in batches."""
        e = self._t.events
        while True:
            query = (
                select(e.c.customer_id, e.c.seq, e.c.content, e.c.prev_hash, e.c.hash)
                .where(e.c.customer_id == customer_id, e.c.seq > after_seq)
                .order_by(e.c.seq)
                .limit(EXPORT_BATCH)
            )
            try:
                async with self._reader.connect() as conn:
                    rows = (await conn.execute(query)).all()
            except DATABASE_ERRORS as exc:
                raise AuditUnavailable(f"audit read failed: {type(exc).__name__}") from exc
            if not rows:
                return
            for row in rows:
                yield self._decode_for_reading(row)
            after_seq = rows[-1].seq

    async def customers(self) -> list[str]:
        """Every customer with a chain (for verifying them all)."""
        try:
            async with self._reader.connect() as conn:
                rows = await conn.execute(
                    select(self._t.heads.c.customer_id).order_by(self._t.heads.c.customer_id)
                )
                return list(rows.scalars())
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit read failed: {type(exc).__name__}") from exc
