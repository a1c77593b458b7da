"""Appending to the hash chain: one transaction per batch, serialized per customer.

Appends for one customer are serialized by the customer's row in
``audit_heads``, not by a global lock:

* on PostgreSQL (many replicas) a batch whose heads this process wrote last
  is one autocommitted statement that moves each head only if it is still the
  remembered one; otherwise the batch upserts and row-locks its heads
  (``INSERT … ON CONFLICT … RETURNING``, in customer-id order, so two batches
  that share customers never deadlock) and writes after them. That row lock
  is what serializes appends per customer across replicas.
* on SQLite ``FOR UPDATE`` does not exist; an append (an outboxed one with
  its outbox delete) begins ``IMMEDIATE``, so it holds SQLite's single write
  lock from the start (no read-then-upgrade, so no ``SQLITE_BUSY`` on
  upgrade), and runs whole on a plain connection's own thread
  (:mod:`gateway.audit.sqlite_thread`): one hop, not one per statement.

Database and driver errors become
:class:`~gateway.audit.errors.AuditUnavailable`; the transaction is rolled
back whole, so a failed append leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import canonical_content, genesis_hash, link_with_content
from gateway.audit.errors import DATABASE_ERRORS, AuditUnavailable
from gateway.audit.event import AuditEvent, EventDraft, OutboxEntry
from gateway.audit.sqlite_thread import SQLiteThread
from gateway.audit.tables import AuditTables, aware_utc

__all__ = ["ChainAppender", "event_row", "utcnow"]

T = TypeVar("T")

_REMEMBERED_HEADS = 100_000  # customers whose last head one process keeps

_EVENT_COLUMNS = (
    "customer_id",
    "seq",
    "occurred_at",
    "action",
    "outcome",
    "caller_id",
    "connection_id",
    "trace_id",
    "content",
    "prev_hash",
    "hash",
)
_EVENT_TYPES = (
    "text",
    "bigint",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
)


def _event_values(event: AuditEvent, content: bytes | None = None) -> tuple[Any, ...]:
    """The event's row, in ``_EVENT_COLUMNS`` order; ``content``: its canonical bytes,
    when the caller has them already."""
    return (
        event.customer_id,
        event.seq,
        event.occurred_at,
        str(event.action),
        str(event.outcome),
        event.caller_id,
        event.connection_id,
        event.trace_id,
        (content or canonical_content(event)).decode("utf-8"),
        event.prev_hash,
        event.hash,
    )


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection (asyncpg's) under a SQLAlchemy one."""
    return (await conn.get_raw_connection()).driver_connection


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays ``unnest`` takes back apart)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _postgres_claims(tables: AuditTables, quote: Callable[[Table], str]) -> tuple[str, str]:
    """Delete outbox rows by id, returning the ids deleted: waiting for a row another
    transaction holds (the group-commit writer), or skipping it (a drain)."""
    outbox = quote(tables.outbox)
    claim = f"DELETE FROM {outbox} WHERE id = ANY($1::text[]) RETURNING id"  # noqa: S608
    claim_skipping = (
        f"DELETE FROM {outbox} WHERE id IN (SELECT id FROM {outbox} "  # noqa: S608
        "WHERE id = ANY($1::text[]) FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    return claim, claim_skipping


def _postgres_statements(
    tables: AuditTables, quote: Callable[[Table], str]
) -> tuple[str, str, str]:
    """The PostgreSQL append's statements: lock (and create) heads; write a batch under
    those locks; write a batch after heads this process wrote, without a lock first."""
    # Only table names (quoted by the dialect) and constant column names are
    # interpolated; every value travels as a bind parameter.
    heads, events, subjects = quote(tables.heads), quote(tables.events), quote(tables.subjects)
    lock_heads = (
        f"INSERT INTO {heads} AS h (customer_id, seq, hash, occurred_at) "  # noqa: S608
        "SELECT n.customer_id, 0, n.hash, NULL "
        "FROM unnest($1::text[], $2::text[]) AS n(customer_id, hash) ORDER BY n.customer_id "
        "ON CONFLICT (customer_id) DO UPDATE SET seq = h.seq "
        "RETURNING h.customer_id, h.seq, h.hash, h.occurred_at"
    )
    # One array per event column, plus each event's subject hashes joined by spaces
    # (hashes are hex behind a label, never a space): one array element per event
    # instead of three per subject row, which the driver encodes one by one.
    # ``string_to_array`` and ``unnest`` take them back apart in the server.
    columns = ", ".join(_EVENT_COLUMNS)
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_EVENT_TYPES, start=1))
    first = len(_EVENT_TYPES) + 1
    new_rows = (
        f"new AS (SELECT * FROM unnest({arrays}, ${first}::text[]) AS n({columns}, subjects)), "  # noqa: S608
        f"new_events AS (INSERT INTO {events} ({columns}) SELECT {columns} FROM new), "
        f"new_subjects AS (INSERT INTO {subjects} (customer_id, subject_hash, seq, occurred_at) "
        "SELECT new.customer_id, s.subject_hash, new.seq, new.occurred_at FROM new "
        "CROSS JOIN LATERAL unnest(string_to_array(new.subjects, ' ')) AS s(subject_hash))"
    )
    head = first + 1
    write = (
        f"WITH {new_rows} "  # noqa: S608
        f"UPDATE {heads} AS h SET seq = n.seq, hash = n.hash, occurred_at = n.occurred_at "
        f"FROM unnest(${head}::text[], ${head + 1}::bigint[], ${head + 2}::text[], "
        f"${head + 3}::timestamptz[]) AS n(customer_id, seq, hash, occurred_at) "
        "WHERE h.customer_id = n.customer_id"
    )
    # The same write without a lock taken first, for a batch whose heads this
    # process wrote last: each head moves only if it is still the one this
    # process wrote. If one is not, 1/0 fails the statement, and with it every
    # row it wrote (an implicit transaction is all or nothing).
    write_after = (
        f"WITH moved AS (UPDATE {heads} AS h "  # noqa: S608
        "SET seq = n.seq, hash = n.hash, occurred_at = n.occurred_at "
        f"FROM unnest(${head}::text[], ${head + 1}::bigint[], ${head + 2}::text[], "
        f"${head + 3}::timestamptz[], ${head + 4}::bigint[], ${head + 5}::text[]) "
        "AS n(customer_id, seq, hash, occurred_at, old_seq, old_hash) "
        "WHERE h.customer_id = n.customer_id AND h.seq = n.old_seq AND h.hash = n.old_hash "
        f"RETURNING h.customer_id), {new_rows} "
        f"SELECT 1 / (count(*) = cardinality(${head}::text[]))::int FROM moved"
    )
    return lock_heads, write, write_after


def _sqlite_claim(tables: AuditTables, quote: Callable[[Table], str]) -> str:
    """Delete outbox rows by id (a JSON array, taken apart by ``json_each``,
    https://sqlite.org/json1.html#jeach), returning the ids deleted
    (https://sqlite.org/lang_returning.html). One text for any number of ids."""
    outbox = quote(tables.outbox)
    return (
        f"DELETE FROM {outbox} WHERE id IN (SELECT value FROM json_each(?)) "  # noqa: S608
        "RETURNING id"
    )


def _sqlite_statements(
    tables: AuditTables, quote: Callable[[Table], str]
) -> tuple[str, str, str, str, str]:
    """The SQLite append's statements: create a head, read it, write a batch's events,
    its subject rows, move a head.

    The events and subject rows travel as one JSON array each, taken apart by
    ``json_each`` (https://sqlite.org/json1.html#jeach): one statement and
    one step per table, where ``executemany`` steps once per row, and every
    step gives up the GIL and must win it back from the busy event loop.
    """
    heads, events, subjects = quote(tables.heads), quote(tables.events), quote(tables.subjects)
    fields = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(_EVENT_COLUMNS)))
    return (
        f"INSERT INTO {heads} (customer_id, seq, hash, occurred_at) "  # noqa: S608
        "VALUES (?, 0, ?, NULL) ON CONFLICT (customer_id) DO NOTHING",
        f"SELECT seq, hash, occurred_at FROM {heads} WHERE customer_id = ?",  # noqa: S608
        f"INSERT INTO {events} ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
        f"SELECT {fields} FROM json_each(?)",
        f"INSERT INTO {subjects} (customer_id, subject_hash, seq, occurred_at) "  # noqa: S608
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?)",
        f"UPDATE {heads} SET seq = ?, hash = ?, occurred_at = ? WHERE customer_id = ?",  # noqa: S608
    )


def _json_each_argument(rows: object) -> str:
    """``rows`` as the JSON array a ``json_each(?)`` statement takes apart.

    As text: SQLite 3.45 and later read a BLOB argument as its binary JSONB.
    """
    return orjson.dumps(rows).decode()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _claimed_items(
    items: Sequence[EventDraft | OutboxEntry], claimed: set[str]
) -> tuple[list[int], list[EventDraft], list[datetime | None]]:
    """The items to append: plain drafts, and entries whose outbox row this
    transaction deleted; their positions, drafts and requested times."""
    kept: list[int] = []
    drafts: list[EventDraft] = []
    requested: list[datetime | None] = []
    for index, item in enumerate(items):
        if isinstance(item, OutboxEntry):
            if item.id not in claimed:
                continue
            drafts.append(item.draft)
            requested.append(aware_utc(item.written_at))
        else:
            drafts.append(item)
            requested.append(None)
        kept.append(index)
    return kept, drafts, requested


def _in_item_order(
    count: int, kept: list[int], linked: list[AuditEvent]
) -> list[AuditEvent | None]:
    out: list[AuditEvent | None] = [None] * count
    for index, event in zip(kept, linked, strict=True):
        out[index] = event
    return out


def event_row(event: AuditEvent, content: bytes | None = None) -> dict[str, Any]:
    """The event's ``audit_events`` row as column name -> value."""
    return dict(zip(_EVENT_COLUMNS, _event_values(event, content), strict=True))


class ChainAppender:
    """Links drafts onto their customers' chains and writes them, a batch per transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: AuditTables,
        *,
        read_engine: AsyncEngine | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``engine`` takes the writes; on SQLite the held connection's thread opens
        its plain connection from ``read_engine`` (default: ``engine``)."""
        self._engine = engine
        self._reader = read_engine or engine
        self._t = tables
        self._clock = clock
        self._holder: asyncio.Task[Any] | None = None
        # The held connection and the asyncpg connection under it, looked up once:
        # SQLAlchemy hands the driver's connection out through a greenlet hop.
        self._held: tuple[AsyncConnection, Any] | None = None
        self._pg_lock_heads, self._pg_write, self._pg_write_after = _postgres_statements(
            tables, engine.dialect.identifier_preparer.format_table
        )
        self._pg_claim, self._pg_claim_skipping = _postgres_claims(
            tables, engine.dialect.identifier_preparer.format_table
        )
        # The heads this process's last appends left, per customer (PostgreSQL):
        # the next batch for those customers tries the one-trip write first.
        self._last_heads: dict[str, tuple[int, str, datetime]] = {}
        # SQLite: the held writer connection, the append's statements, and the
        # conversions SQLAlchemy's DateTime makes for SQLite (the same stored text).
        self._sqlite: SQLiteThread | None = None
        self._sqlite_sql = _sqlite_statements(
            tables, engine.dialect.identifier_preparer.format_table
        )
        self._sqlite_claim = _sqlite_claim(tables, engine.dialect.identifier_preparer.format_table)
        stored_time = tables.heads.c.occurred_at.type.dialect_impl(engine.dialect)
        self._sqlite_time: tuple[Callable[[Any], Any], Callable[[Any], Any]] = (
            stored_time.bind_processor(engine.dialect) or (lambda value: value),
            stored_time.result_processor(engine.dialect, None) or (lambda value: value),
        )

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        """Link and write ``drafts`` in one transaction; events come back in draft order.

        Returns only after the commit: each returned event is durable.
        """
        if not drafts:
            return []
        try:
            if self._engine.dialect.name == "postgresql":
                return await self._append_postgres(drafts)
            return await self._on_sqlite_thread(
                lambda connection: self._write_sqlite(connection, drafts)
            )
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit append failed: {type(exc).__name__}") from exc

    async def append_outboxed(
        self, items: Sequence[EventDraft | OutboxEntry], *, skip_locked: bool = False
    ) -> list[AuditEvent | None]:
        """:meth:`append`, where each :class:`OutboxEntry`'s outbox row is deleted by the
        transaction that appends its event; ``None`` in place of an entry whose row
        was already gone (another transaction appended it).

        The outbox row is the entry's idempotency key: present means "not in the
        chain yet", and it disappears in the very commit that puts the event in
        the chain, so no crash can leave an event both appended and pending, and
        none is ever appended twice. The rows are deleted first. On PostgreSQL
        that row-locks them, so a writer and a drain after the same entry
        serialize on it (``skip_locked``, for drains: take only rows nobody
        holds, rather than wait); the heads are locked after the outbox rows by
        every transaction that locks both, and a drain never waits for an
        outbox row, so the two locks cannot deadlock. On SQLite the delete, the
        link and the write run whole on a plain connection's own thread in one
        transaction begun ``IMMEDIATE``, which holds the single write lock
        before the delete: a writer and a drain after the same entry serialize
        on that lock, and the second finds the row gone (``skip_locked``
        changes nothing there).

        An entry's event keeps ``written_at`` as its time unless the customer's
        chain already holds a later one (time never runs backwards within a
        chain); then it takes that later time, the earliest its place allows.
        """
        if not items:
            return []
        ids = sorted({item.id for item in items if isinstance(item, OutboxEntry)})
        try:
            if self._engine.dialect.name == "postgresql":
                return await self._append_outboxed_postgres(items, ids, skip_locked)
            claim = _json_each_argument(ids)
            return await self._on_sqlite_thread(
                lambda connection: self._write_outboxed_sqlite(connection, items, claim)
            )
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit append failed: {type(exc).__name__}") from exc

    async def _append_outboxed_postgres(
        self, items: Sequence[EventDraft | OutboxEntry], ids: list[str], skip_locked: bool
    ) -> list[AuditEvent | None]:
        customers = sorted(
            {(item.draft if isinstance(item, OutboxEntry) else item).customer_id for item in items}
        )
        heads: dict[str, tuple[int, str, datetime | None]] = {}
        try:
            async with self._postgres_connection() as pg, pg.transaction():
                rows = await pg.fetch(
                    self._pg_claim_skipping if skip_locked else self._pg_claim, ids
                )
                kept, drafts, requested = _claimed_items(items, {r["id"] for r in rows})
                linked: list[AuditEvent] = []
                if drafts:
                    linked, heads = await self._write_postgres_locked(
                        pg, drafts, sorted({draft.customer_id for draft in drafts}), requested
                    )
        except BaseException:
            for customer_id in customers:
                self._last_heads.pop(customer_id, None)
            raise
        self._remember(heads)
        return _in_item_order(len(items), kept, linked)

    @asynccontextmanager
    async def holding_connection(self) -> AsyncIterator[None]:
        """The calling task's appends inside this block share one connection kept out of
        the pool.

        The group-commit writer holds one for its lifetime: a batch then pays
        neither the pool's checkout (and its ping) nor a wait behind request
        handlers for a free connection. A connection that fails an append is
        dropped and the next append opens another. On SQLite it is a plain
        connection on a thread of its own (:class:`SQLiteThread`), outside the
        pool: a batch is one hop to that thread instead of one per driver call.
        Other tasks' appends meanwhile (the outbox drain's) take a connection of
        their own: asyncpg runs one operation at a time on a connection, and
        a second one started under the writer's breaks both.
        """
        self._holder = asyncio.current_task()
        try:
            yield
        finally:
            self._holder = None
            # Closed outright rather than checked in: at shutdown the engine's pool
            # may already be disposed, and a connection checked in to a disposed
            # pool is never closed (its socket would be left to the collector).
            await self._drop_held(invalidate=True)
            await self._drop_sqlite()

    def _holding_here(self) -> bool:
        """Whether this task is the one inside :meth:`holding_connection`."""
        return self._holder is not None and asyncio.current_task() is self._holder

    async def _drop_held(self, *, invalidate: bool = False) -> None:
        pair, self._held = self._held, None
        if pair is None:
            return
        held = pair[0]
        with contextlib.suppress(*DATABASE_ERRORS):
            if invalidate:
                await held.invalidate()
            await held.close()

    @asynccontextmanager
    async def _postgres_connection(self) -> AsyncIterator[Any]:
        """The asyncpg connection under a held or a pooled SQLAlchemy connection."""
        if not self._holding_here():
            async with self._engine.connect() as conn:
                yield await _driver(conn)
            return
        held = self._held
        if held is not None and (held[0].invalidated or held[1].is_closed()):
            # The server closed it while idle (a restart, a terminated backend):
            # noticed without a round trip, as the pool's checkout ping would.
            await self._drop_held(invalidate=True)
        if self._held is None:
            conn = await self._engine.connect()
            self._held = (conn, await _driver(conn))
        try:
            yield self._held[1]
        except BaseException:
            # Whatever failed (the server, the network, a constraint), the next
            # batch starts on a fresh connection rather than diagnose this one.
            await self._drop_held(invalidate=True)
            raise

    async def _append_postgres(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        """One round trip when this process wrote the batch's heads last, else four.

        The usual case on one replica, and with sticky customers on many: every
        head of the batch is one this process wrote, so it links the batch on
        those heads and sends one autocommitted statement that moves each head
        only if it is still the remembered one (compare-and-set) and inserts
        the events and subject rows. If another replica moved a head meanwhile,
        the statement fails whole (1/0; the events' primary key holds the time
        too, since the table is partitioned by it, so it catches a seq written
        twice only at the same instant: the head's compare-and-set is what
        decides) and the batch takes the locking path. PostgreSQL routes each
        row to its month's partition (:mod:`gateway.audit.partitions`).

        The locking path is BEGIN, lock heads, write, COMMIT. The head upsert
        ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` creates missing heads and
        row-locks every head of the batch in one statement (in customer-id
        order, so two batches never deadlock); under READ COMMITTED it returns
        the newest committed head, waiting for another replica's batch to
        commit first
        (https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT).
        The events, their subject rows and the new heads then go in one
        statement of data-modifying CTEs over ``unnest`` arrays
        (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING),
        whose text does not depend on the batch size, so asyncpg prepares it
        once per connection. Either way the commit is PostgreSQL's ordinary
        durable one.
        """
        customers = sorted({draft.customer_id for draft in drafts})
        try:
            async with self._postgres_connection() as pg:
                remembered = {c: self._last_heads[c] for c in customers if c in self._last_heads}
                if len(remembered) == len(customers):
                    heads: dict[str, tuple[int, str, datetime | None]] = dict(remembered)
                    linked, event_rows = self._link(drafts, heads)
                    try:
                        await pg.fetchval(
                            self._pg_write_after,
                            *self._write_arguments(customers, heads, linked, event_rows),
                            [remembered[c][0] for c in customers],
                            [remembered[c][1] for c in customers],
                        )
                    except (asyncpg.DivisionByZeroError, asyncpg.UniqueViolationError):
                        pass  # another replica wrote to one of these chains: lock them
                    else:
                        self._remember(heads)
                        return linked
                async with pg.transaction():
                    linked, heads = await self._write_postgres_locked(pg, drafts, customers)
        except BaseException:
            # Committed or not, these heads are no longer known for sure.
            for customer_id in customers:
                self._last_heads.pop(customer_id, None)
            raise
        self._remember(heads)
        return linked

    async def _write_postgres_locked(
        self,
        pg: Any,
        drafts: Sequence[EventDraft],
        customers: list[str],
        requested: Sequence[datetime | None] | None = None,
    ) -> tuple[list[AuditEvent], dict[str, tuple[int, str, datetime | None]]]:
        """Lock (creating) the heads of ``customers`` and write ``drafts`` after them,
        inside the caller's open transaction on ``pg``."""
        rows = await pg.fetch(self._pg_lock_heads, customers, [genesis_hash(c) for c in customers])
        heads = {r["customer_id"]: (r["seq"], r["hash"], r["occurred_at"]) for r in rows}
        linked, event_rows = self._link(drafts, heads, requested)
        await pg.execute(
            self._pg_write, *self._write_arguments(customers, heads, linked, event_rows)
        )
        return linked, heads

    def _remember(self, heads: dict[str, tuple[int, str, datetime | None]]) -> None:
        if len(self._last_heads) > _REMEMBERED_HEADS:
            self._last_heads.clear()  # bounded; forgetting only costs the locking path
        for customer_id, (seq, head_hash, occurred_at) in heads.items():
            if occurred_at is not None:
                self._last_heads[customer_id] = (seq, head_hash, occurred_at)

    @staticmethod
    def _write_arguments(
        customers: list[str],
        heads: dict[str, tuple[int, str, datetime | None]],
        linked: list[AuditEvent],
        event_rows: list[tuple[Any, ...]],
    ) -> list[list[Any]]:
        """The write statements' arrays: one per event column, the events' subjects
        (space-joined, in the rows' order: by customer, then seq), the new heads."""
        ordered = sorted(linked, key=lambda event: (event.customer_id, event.seq))
        return [
            *_columns(event_rows, len(_EVENT_COLUMNS)),
            [" ".join(event.subjects) for event in ordered],
            *_columns([(c, *heads[c]) for c in customers], 4),
        ]

    async def _on_sqlite_thread(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction, in one hop to a connection's
        own thread (:class:`SQLiteThread`).

        The thread is held for the writer's life inside :meth:`holding_connection`
        (dropped after a failure, reopened by the next batch); otherwise one is
        opened for this call alone.
        """
        if not self._holding_here():
            thread = await SQLiteThread.open(self._reader)
            try:
                return await thread.write(body)
            finally:
                await thread.close()
        if self._sqlite is None:
            self._sqlite = await SQLiteThread.open(self._reader)
        try:
            return await self._sqlite.write(body)
        except BaseException:
            await self._drop_sqlite()
            raise

    async def _drop_sqlite(self) -> None:
        thread, self._sqlite = self._sqlite, None
        if thread is not None:
            with contextlib.suppress(sqlite3.Error):
                await thread.close()

    def _write_outboxed_sqlite(
        self, connection: sqlite3.Connection, items: Sequence[EventDraft | OutboxEntry], ids: str
    ) -> list[AuditEvent | None]:
        """Delete the entries' outbox rows, then link and write the claimed items at their
        requested times; on the connection's thread, in its transaction."""
        claimed = {row[0] for row in connection.execute(self._sqlite_claim, (ids,))}
        kept, drafts, requested = _claimed_items(items, claimed)
        linked = self._write_sqlite(connection, drafts, requested) if drafts else []
        return _in_item_order(len(items), kept, linked)

    def _write_sqlite(
        self,
        connection: sqlite3.Connection,
        drafts: Sequence[EventDraft],
        requested: Sequence[datetime | None] | None = None,
    ) -> list[AuditEvent]:
        """Create and read the heads, link, write; on the connection's thread, in its transaction.

        The head upsert may not be the transaction's first write (an outboxed
        append deletes first), but the transaction began IMMEDIATE, so it holds
        the write lock from the start either way.
        """
        create_head, read_head, write_event, write_subject, move_head = self._sqlite_sql
        to_db, from_db = self._sqlite_time
        customers = sorted({draft.customer_id for draft in drafts})
        connection.executemany(create_head, [(c, genesis_hash(c)) for c in customers])
        heads: dict[str, tuple[int, str, datetime | None]] = {}
        for customer_id in customers:
            seq, head_hash, last_time = connection.execute(read_head, (customer_id,)).fetchone()
            heads[customer_id] = (seq, head_hash, aware_utc(from_db(last_time)))
        linked, event_rows = self._link(drafts, heads, requested)
        at = _EVENT_COLUMNS.index("occurred_at")
        events = [(*row[:at], to_db(row[at]), *row[at + 1 :]) for row in event_rows]
        connection.execute(write_event, (_json_each_argument(events),))
        stored_at = {(row[0], row[1]): row[at] for row in events}
        subjects = [
            (e.customer_id, s, e.seq, stored_at[e.customer_id, e.seq])
            for e in linked
            for s in e.subjects
        ]
        if subjects:
            connection.execute(write_subject, (_json_each_argument(subjects),))
        connection.executemany(
            move_head,
            [(heads[c][0], heads[c][1], to_db(heads[c][2]), c) for c in customers],
        )
        return linked

    def _link(
        self,
        drafts: Sequence[EventDraft],
        heads: dict[str, tuple[int, str, datetime | None]],
        requested: Sequence[datetime | None] | None = None,
    ) -> tuple[list[AuditEvent], list[tuple[Any, ...]]]:
        """Place ``drafts`` after ``heads`` (moved on in place); the events (in draft
        order) and their rows to write (values in ``_EVENT_COLUMNS`` order, in write order).

        ``requested`` (per draft, ``None``: now) is the time an outboxed draft asks
        for; it gets it unless the chain is already past it, then the chain's last time.
        """
        by_customer: dict[str, list[int]] = defaultdict(list)
        for index, draft in enumerate(drafts):
            by_customer[draft.customer_id].append(index)
        linked: list[AuditEvent | None] = [None] * len(drafts)
        event_rows: list[tuple[Any, ...]] = []
        for customer_id in sorted(by_customer):
            seq, prev_hash, last_time = heads[customer_id]
            # Time never runs backwards within a chain, even across replicas
            # whose clocks disagree: newest-first by time and by seq then agree.
            now = self._clock()
            last_time = aware_utc(last_time)
            occurred_at = max(now, last_time) if last_time else now
            for index in by_customer[customer_id]:
                if requested is not None:
                    at = requested[index] or now
                    occurred_at = max(at, last_time) if last_time else at
                    last_time = occurred_at
                seq += 1
                event, content = link_with_content(drafts[index], seq, prev_hash, occurred_at)
                prev_hash = event.hash
                linked[index] = event
                event_rows.append(_event_values(event, content))
            heads[customer_id] = (seq, prev_hash, occurred_at)
        return [event for event in linked if event is not None], event_rows
