"""The audit log in the database: append, search, verify, checkpoint, prune.

Written against SQLAlchemy 2 Core for SQLite (one process, WAL) and
PostgreSQL (many replicas). Appends for one customer are serialized by the
customer's row in ``audit_heads``, not by a global lock:

* every append transaction first upserts the head rows it needs
  (``INSERT … ON CONFLICT DO NOTHING``), in customer-id order, then reads them
  ``SELECT … FOR UPDATE`` in the same order (no deadlock between two batches
  that share customers). On PostgreSQL that row lock is what serializes
  appends per customer across replicas.
* on SQLite ``FOR UPDATE`` does not exist; an append (an outboxed one with
  its outbox delete) begins ``IMMEDIATE``, so it holds SQLite's single write
  lock from the start (no read-then-upgrade, so no ``SQLITE_BUSY`` on
  upgrade), and runs whole on a plain connection's own thread
  (:mod:`gateway.audit.sqlite_thread`): one hop, not one per statement.
  Checkpoints and pruning verify the chain on the read engine first (what
  they verify is immutable) and take the lock through the engine, whose
  upsert is their first statement and a write, only for a final check and
  their write.

Database and driver errors are translated here into
:class:`~gateway.audit.errors.AuditUnavailable`; the transaction is rolled back
whole, so a failed append leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import Table, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import (
    ChainVerifier,
    VerifyResult,
    canonical_content,
    decode_event,
    genesis_hash,
    link_with_content,
)
from gateway.audit.checkpoint import Checkpoint, CheckpointKeys, CheckpointSigner, prunable_up_to
from gateway.audit.errors import AuditUnavailable, ChainBroken
from gateway.audit.event import AuditEvent, EventDraft, OutboxEntry
from gateway.audit.sqlite_thread import SQLiteThread
from gateway.audit.tables import AuditTables

__all__ = ["DEFAULT_SEARCH_LIMIT", "MAX_SEARCH_LIMIT", "AuditCursor", "AuditPage", "AuditStore"]

DEFAULT_SEARCH_LIMIT = 50
MAX_SEARCH_LIMIT = 1000
DEFAULT_VERIFY_BATCH = 2000
# How often a checkpoint verifies again after another signer signed first.
_SIGNING_ATTEMPTS = 3

# What a database that cannot be reached or written looks like from here (the
# PostgreSQL append path speaks asyncpg directly, so its errors too).
_UNAVAILABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    OSError,
    TimeoutError,
)

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
        f"new_subjects AS (INSERT INTO {subjects} (customer_id, subject_hash, seq) "
        "SELECT new.customer_id, s.subject_hash, new.seq FROM new "
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
        f"INSERT INTO {subjects} (customer_id, subject_hash, seq) "  # noqa: S608
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "json_extract(value, '$[2]') FROM json_each(?)",
        f"UPDATE {heads} SET seq = ?, hash = ?, occurred_at = ? WHERE customer_id = ?",  # noqa: S608
    )


def _json_each_argument(rows: object) -> str:
    """``rows`` as the JSON array a ``json_each(?)`` statement takes apart.

    As text: SQLite 3.45 and later read a BLOB argument as its binary JSONB.
    """
    return orjson.dumps(rows).decode()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for DateTime(timezone=True); they were stored as UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


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
            requested.append(_aware(item.written_at))
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


class AuditStore:
    """One customer-partitioned, hash-chained audit log in one database."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: AuditTables,
        *,
        keys: CheckpointKeys | None = None,
        clock: Callable[[], datetime] = _utcnow,
        read_engine: AsyncEngine | None = None,
    ) -> None:
        """``engine`` takes the writes; ``read_engine`` (default: ``engine``) serves search,
        export and verification, so that on SQLite an engine that begins every
        transaction IMMEDIATE does not hold the write lock through a long verify.
        """
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(
                f"the audit store supports SQLite and PostgreSQL, not {engine.dialect.name}"
            )
        self._engine = engine
        self._reader = read_engine or engine
        self._t = tables
        self._keys = keys or CheckpointKeys()
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

    # -- append ----------------------------------------------------------------------------

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
        except _UNAVAILABLE as exc:
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
        except _UNAVAILABLE as exc:
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
        with contextlib.suppress(*_UNAVAILABLE):
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
        the statement fails whole (1/0, or the events' primary key when that
        replica's seq is already there) and the batch takes the locking path.

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
            heads[customer_id] = (seq, head_hash, _aware(from_db(last_time)))
        linked, event_rows = self._link(drafts, heads, requested)
        at = _EVENT_COLUMNS.index("occurred_at")
        events = [(*row[:at], to_db(row[at]), *row[at + 1 :]) for row in event_rows]
        connection.execute(write_event, (_json_each_argument(events),))
        subjects = [(e.customer_id, s, e.seq) for e in linked for s in e.subjects]
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
            last_time = _aware(last_time)
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

    @staticmethod
    def _event_row(event: AuditEvent, content: bytes | None = None) -> dict[str, Any]:
        return dict(zip(_EVENT_COLUMNS, _event_values(event, content), strict=True))

    async def _lock_heads(
        self, conn: AsyncConnection, customer_ids: list[str]
    ) -> dict[str, tuple[int, str, datetime | None]]:
        heads = self._t.heads
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(heads)
            .values(
                [
                    {"customer_id": c, "seq": 0, "hash": genesis_hash(c), "occurred_at": None}
                    for c in customer_ids
                ]
            )
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )
        rows = await conn.execute(
            select(heads.c.customer_id, heads.c.seq, heads.c.hash, heads.c.occurred_at)
            .where(heads.c.customer_id.in_(customer_ids))
            .order_by(heads.c.customer_id)
            .with_for_update()
        )
        return {r.customer_id: (r.seq, r.hash, _aware(r.occurred_at)) for r in rows}

    # -- search ----------------------------------------------------------------------------

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
            hits = (
                select(s.c.customer_id, s.c.seq)
                .where(
                    s.c.subject_hash.in_(
                        [subject_hash] if isinstance(subject_hash, str) else list(subject_hash)
                    ),
                    s.c.customer_id.in_(customer_ids),
                )
                .cte("subject_hits")
                .prefix_with("MATERIALIZED")
            )
            query = query.select_from(
                hits.join(e, and_(e.c.customer_id == hits.c.customer_id, e.c.seq == hits.c.seq))
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
        except _UNAVAILABLE as exc:
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
        except (ValueError, TypeError, KeyError) as exc:
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
                .limit(DEFAULT_VERIFY_BATCH)
            )
            try:
                async with self._reader.connect() as conn:
                    rows = (await conn.execute(query)).all()
            except _UNAVAILABLE as exc:
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
        except _UNAVAILABLE as exc:
            raise AuditUnavailable(f"audit read failed: {type(exc).__name__}") from exc

    # -- verification ----------------------------------------------------------------------

    async def checkpoints(self, customer_id: str) -> list[Checkpoint]:
        """A customer's checkpoints, oldest first (unverified: see :meth:`verify`)."""
        try:
            async with self._reader.connect() as conn:
                checkpoints, bad = await self._load_checkpoints(conn, customer_id)
        except _UNAVAILABLE as exc:
            raise AuditUnavailable(f"audit read failed: {type(exc).__name__}") from exc
        if bad:
            raise ChainBroken(bad[0][1])
        return checkpoints

    async def _load_checkpoints(
        self, conn: AsyncConnection, customer_id: str
    ) -> tuple[list[Checkpoint], list[tuple[int, str]]]:
        c = self._t.checkpoints
        rows = await conn.execute(
            select(c.c.seq, c.c.note).where(c.c.customer_id == customer_id).order_by(c.c.seq)
        )
        checkpoints: list[Checkpoint] = []
        bad: list[tuple[int, str]] = []
        for row in rows:
            try:
                checkpoint = Checkpoint.parse(row.note)
            except ValueError as exc:
                bad.append((row.seq, f"checkpoint at seq {row.seq} is unreadable: {exc}"))
                continue
            if (checkpoint.customer_id, checkpoint.seq) != (customer_id, row.seq):
                bad.append((row.seq, f"checkpoint row {row.seq} holds another checkpoint"))
                continue
            checkpoints.append(checkpoint)
        return checkpoints, bad

    async def verify(self, customer_id: str) -> VerifyResult:
        """Recompute the customer's chain and check it against its head and checkpoints."""
        h, e = self._t.heads, self._t.events
        try:
            async with self._reader.connect() as conn:
                # Checkpoints before the head, and the head and the highest event
                # in one statement: each read sees at least what the one before
                # it committed, so a concurrent append is never mistaken for tampering.
                checkpoints, bad = await self._load_checkpoints(conn, customer_id)
                head = (
                    await conn.execute(
                        select(h.c.seq, h.c.hash).where(h.c.customer_id == customer_id)
                    )
                ).first()
                verifier = ChainVerifier(
                    customer_id,
                    checkpoints,
                    self._keys,
                    head=(head.seq, head.hash) if head else None,
                )
                for seq, problem in bad:
                    verifier.flag(seq, problem)
                upto = head.seq if head else None
                await self._feed(conn, verifier, customer_id, after_seq=0, upto=upto)
                ends = (
                    await conn.execute(
                        select(
                            select(func.max(e.c.seq))
                            .where(e.c.customer_id == customer_id)
                            .scalar_subquery(),
                            select(h.c.seq).where(h.c.customer_id == customer_id).scalar_subquery(),
                        )
                    )
                ).one()
        except _UNAVAILABLE as exc:
            raise AuditUnavailable(f"audit verify failed: {type(exc).__name__}") from exc
        last_event, head_now = ends
        if last_event is not None and last_event > (head_now or 0):
            verifier.flag(
                (head_now or 0) + 1, f"events follow the recorded head at seq {head_now or 0}"
            )
        return verifier.finish()

    async def _feed(
        self,
        conn: AsyncConnection,
        verifier: ChainVerifier,
        customer_id: str,
        *,
        after_seq: int,
        upto: int | None,
    ) -> None:
        e, s = self._t.events, self._t.subjects
        while True:
            query = (
                select(e)
                .where(e.c.customer_id == customer_id, e.c.seq > after_seq)
                .order_by(e.c.seq)
                .limit(DEFAULT_VERIFY_BATCH)
            )
            if upto is not None:
                query = query.where(e.c.seq <= upto)
            rows = (await conn.execute(query)).all()
            if not rows:
                return
            subject_rows = await conn.execute(
                select(s.c.seq, s.c.subject_hash).where(
                    s.c.customer_id == customer_id,
                    s.c.seq > after_seq,
                    s.c.seq <= rows[-1].seq,
                )
            )
            subjects: dict[int, set[str]] = defaultdict(set)
            for seq, subject_hash in subject_rows:
                subjects[seq].add(subject_hash)
            for row in rows:
                problem, event = self._check_row(row, subjects.pop(row.seq, set()))
                if event is None:
                    verifier.add_unreadable(row.seq, problem)
                else:
                    verifier.add(event)
                    if problem:
                        verifier.flag(row.seq, f"event {row.seq}: {problem}")
            if verifier.failed:
                return
            after_seq = rows[-1].seq

    @staticmethod
    def _check_row(row: Any, subjects: set[str]) -> tuple[str, AuditEvent | None]:
        try:
            event = decode_event(row.content, prev_hash=row.prev_hash, hash=row.hash)
        except (ValueError, TypeError, KeyError) as exc:
            return f"content does not decode ({type(exc).__name__})", None
        if event.seq != row.seq or event.customer_id != row.customer_id:
            return f"row holds event {event.seq} (rows moved or swapped)", None
        # The search columns are copies of hashed content; an edit to them
        # would misdirect a search without touching the chain.
        copies = {
            "occurred_at": (_aware(row.occurred_at), event.occurred_at),
            "action": (row.action, str(event.action)),
            "outcome": (row.outcome, str(event.outcome)),
            "caller_id": (row.caller_id, event.caller_id),
            "connection_id": (row.connection_id, event.connection_id),
            "trace_id": (row.trace_id, event.trace_id),
            "subjects": (subjects, set(event.subjects)),
        }
        for name, (stored, hashed) in copies.items():
            if stored != hashed:
                return f"search column {name} differs from the hashed content", event
        return "", event

    # -- checkpoints and retention ---------------------------------------------------------

    async def checkpoint(self, signer: CheckpointSigner, customer_id: str) -> Checkpoint | None:
        """Sign the customer's head, after verifying the events since the last checkpoint.

        Returns the newest checkpoint (a new one unless the head has not
        moved), or ``None`` for a customer with no events. Raises
        :class:`ChainBroken` rather than sign over a chain that does not verify.

        The verification runs outside the write lock (on SQLite, the one every
        audited request's append waits for; on PostgreSQL, the customer's head
        row): the chain up to the head read first never changes again (the log
        is append-only), so it is verified on the read engine while appends go
        on, and the checkpoint signs that head, never one read later. Under the
        lock only the short final check runs: the checkpoints are still the
        ones the verification started from (else, another signer was first:
        its checkpoint is returned if it covers as much, or the verification
        runs again from it) and the event at the head still has the verified
        hash; then the checkpoint is written.
        """
        keys = self._keys | CheckpointKeys({signer.key_id: signer.public_key})
        try:
            for _ in range(_SIGNING_ATTEMPTS):
                verified = await self._verify_up_to_head(customer_id, keys)
                if verified is None or isinstance(verified, Checkpoint):
                    return verified
                checkpoints, head_seq, head_hash = verified
                last = checkpoints[-1] if checkpoints else None
                async with self._engine.begin() as conn:
                    await self._lock_heads(conn, [customer_id])
                    now, bad = await self._load_checkpoints(conn, customer_id)
                    if bad:
                        raise ChainBroken(bad[0][1])
                    if [c.note for c in now] != [c.note for c in checkpoints]:
                        if now and now[-1].seq >= head_seq:
                            return now[-1]
                        continue  # verify again, from the newer checkpoint
                    if await self._event_hash(conn, customer_id, head_seq) != head_hash:
                        raise ChainBroken(f"refusing to sign: event {head_seq} changed")
                    checkpoint = signer.sign(
                        customer_id,
                        head_seq,
                        head_hash,
                        max(self._clock(), last.signed_at) if last else self._clock(),
                        last.hash if last else Checkpoint.GENESIS,
                    )
                    await conn.execute(
                        self._t.checkpoints.insert().values(
                            customer_id=customer_id,
                            seq=checkpoint.seq,
                            signed_at=checkpoint.signed_at,
                            key_id=checkpoint.key_id,
                            note=checkpoint.note,
                        )
                    )
                    return checkpoint
        except _UNAVAILABLE as exc:
            raise AuditUnavailable(f"audit checkpoint failed: {type(exc).__name__}") from exc
        raise AuditUnavailable("audit checkpoint failed: other signers kept signing first")

    async def _verify_up_to_head(
        self, customer_id: str, keys: CheckpointKeys
    ) -> tuple[list[Checkpoint], int, str] | Checkpoint | None:
        """Outside any lock: the checkpoints and the head as they are now, and the events
        between the newest checkpoint and that head verified.

        ``None`` for a customer with no events; the newest checkpoint when it is
        already at the head. Raises :class:`ChainBroken` when the chain does not verify.
        """
        h = self._t.heads
        async with self._reader.connect() as conn:
            # Checkpoints before the head: a checkpoint signed meanwhile is at
            # or below the head read next, never beyond it.
            checkpoints, bad = await self._load_checkpoints(conn, customer_id)
            if bad:
                raise ChainBroken(bad[0][1])
            head = (
                await conn.execute(select(h.c.seq, h.c.hash).where(h.c.customer_id == customer_id))
            ).first()
            if head is None or head.seq == 0:
                return None
            last = checkpoints[-1] if checkpoints else None
            if last is not None and last.seq == head.seq:
                return last
            verifier = ChainVerifier(customer_id, checkpoints, keys, head=(head.seq, head.hash))
            start = last.seq if last else 0
            await self._feed(conn, verifier, customer_id, after_seq=start, upto=head.seq)
        result = verifier.finish()
        if not result.ok:
            raise ChainBroken(f"refusing to sign: {result.problem}")
        return checkpoints, head.seq, head.hash

    async def _event_hash(self, conn: AsyncConnection, customer_id: str, seq: int) -> str | None:
        e = self._t.events
        return (
            await conn.execute(
                select(e.c.hash).where(e.c.customer_id == customer_id, e.c.seq == seq)
            )
        ).scalar()

    async def _first_seq(self, conn: AsyncConnection, customer_id: str) -> int | None:
        """The seq of the customer's oldest event still kept (``None``: none is)."""
        e = self._t.events
        first = (
            await conn.execute(select(func.min(e.c.seq)).where(e.c.customer_id == customer_id))
        ).scalar()
        return None if first is None else int(first)

    async def prune(self, customer_id: str, before: datetime) -> int:
        """Delete events for retention, only up to a checkpoint signed before ``before``.

        The events to be deleted are verified first (once gone, nothing could
        show they had been altered). Returns how many events were deleted.

        As in :meth:`checkpoint`, the verification runs outside the write lock:
        the events up to a signed checkpoint never change again. Under the lock
        the checkpoint pruned to is checked to be still there and still match
        its event, then the events up to it are deleted (whatever another
        prune deleted meanwhile was among those verified).
        """
        e, s = self._t.events, self._t.subjects
        try:
            async with self._reader.connect() as conn:
                checkpoints, bad = await self._load_checkpoints(conn, customer_id)
                if bad:
                    raise ChainBroken(bad[0][1])
                upto = prunable_up_to(checkpoints, before)
                if upto is None:
                    return 0
                first = await self._first_seq(conn, customer_id)
                if first is None or first > upto:
                    return 0
                verifier = ChainVerifier(customer_id, checkpoints, self._keys)
                await self._feed(conn, verifier, customer_id, after_seq=first - 1, upto=upto)
            result = verifier.finish(complete=False)
            if not result.ok or result.head_seq != upto:
                raise ChainBroken(f"refusing to prune: {result.problem or 'chain ends early'}")
            anchor = next(c for c in checkpoints if c.seq == upto)
            async with self._engine.begin() as conn:
                await self._lock_heads(conn, [customer_id])
                now, bad = await self._load_checkpoints(conn, customer_id)
                if bad:
                    raise ChainBroken(bad[0][1])
                if anchor.note not in {c.note for c in now}:
                    raise ChainBroken(f"refusing to prune: the checkpoint at seq {upto} changed")
                at_anchor = await self._event_hash(conn, customer_id, upto)
                if at_anchor is None:
                    still = await self._first_seq(conn, customer_id)
                    if still is None or still > upto:
                        return 0  # another prune deleted them first
                if at_anchor != anchor.head_hash:
                    raise ChainBroken(f"refusing to prune: event {upto} changed")
                await conn.execute(delete(s).where(s.c.customer_id == customer_id, s.c.seq <= upto))
                deleted = await conn.execute(
                    delete(e).where(e.c.customer_id == customer_id, e.c.seq <= upto)
                )
                return int(deleted.rowcount)
        except _UNAVAILABLE as exc:
            raise AuditUnavailable(f"audit prune failed: {type(exc).__name__}") from exc
