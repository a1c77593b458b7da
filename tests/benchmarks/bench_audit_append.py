"""Benchmark (not a test): audit appends per second through the group-commit writer.

Run: ``.venv/bin/python tests/benchmarks/bench_audit_append.py [--events N] [--only DB]``.

For SQLite (a temporary file, WAL, checkpointed by a thread of its own as the
runtime does) and PostgreSQL (a throwaway database on
``LINKGATE_TEST_POSTGRES_URL``), ``--events`` drafts shaped like a records read
(three subject hashes, a trace summary) are recorded through
:class:`gateway.audit.AuditWriter`, as the gateway does: by 1 caller at a time
(every event its own durable commit) and by 32 concurrent callers (group
commit). The writer's batches are noted as they are committed.

The baseline in the same run and database is a **plain insert of the same
rows in the same batches**: the rows the writer wrote (events and their
subject rows), copied into twin tables with the same schema and indexes, one
commit per batch the writer took, no head row, no locking, no hashing; written
the plainest fast way on each database (SQLite: SQLAlchemy's executemany, as
the writer; PostgreSQL: asyncpg, one statement of two INSERTs over ``unnest``
arrays, as the writer). Its ratio says what the chain (head lock, linking,
hashing, head update) costs on top of writing the same bytes durably. Writes
``var/bench/bench_audit_append.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402 - after the path tweak, like the other benchmarks
import contract  # noqa: E402 - the sibling module of the JSON contract
from sqlalchemy import MetaData, Table, insert  # noqa: E402
from sqlalchemy import event as sqlalchemy_events  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from gateway.audit import (  # noqa: E402
    Action,
    AuditEvent,
    AuditPartitions,
    AuditStore,
    AuditWriter,
    EventDraft,
    Outcome,
    SubjectHasher,
)
from gateway.audit.append import event_row  # noqa: E402
from gateway.storage import audit_tables, create_engine, writer  # noqa: E402
from gateway.storage.migrate import upgrade  # noqa: E402
from gateway.storage.wal import WalCheckpointer, sqlite_file  # noqa: E402

POSTGRES_URL = os.environ.get(
    "LINKGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
CONCURRENCIES = (1, 32)
CUSTOMERS = ("acme", "globex")  # two chains, as two tenants on one replica


def drafts(count: int) -> list[EventDraft]:
    hasher = SubjectHasher(b"bench-audit-append-key-0123456789")
    return [
        EventDraft(
            customer_id=CUSTOMERS[n % len(CUSTOMERS)],
            action=Action.RECORDS_READ,
            outcome=Outcome.ALLOWED,
            caller_id="svc_bench",
            caller_class="internal",
            connection_id="con_bench",
            provider="sandbox",
            resource="posts",
            purpose="essential.service",
            record_count=25,
            categories=("user.content.public", "user.name"),
            dropped={"visibility": 3},
            subjects=tuple(
                hasher.hash(CUSTOMERS[n % len(CUSTOMERS)], f"sandbox:user:{(n * 7 + k) % 997}")
                for k in range(3)
            ),
            trace_id=secrets.token_hex(16),
            trace_summary={"spans": [{"name": "upstream GET", "status": 200, "us": 1234}]},
        )
        for n in range(count)
    ]


class BatchLog(AuditStore):
    """The store, noting each batch it committed (the baseline replays the same batches)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[AuditEvent]] = []

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        events = await super().append(drafts)
        self.batches.append(events)
        return events


async def through_writer(
    engine: AsyncEngine, items: list[EventDraft], concurrency: int
) -> tuple[float, list[list[AuditEvent]]]:
    store = BatchLog(writer(engine), audit_tables, read_engine=engine)
    queue = list(reversed(items))
    async with AuditWriter(store) as audit:

        async def caller() -> None:
            while queue:
                await audit.record(queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(items) / elapsed, store.batches


def _twins(engine: AsyncEngine) -> tuple[Table, Table]:
    """Tables shaped like ``audit_events`` / ``audit_subjects`` (same columns and indexes,
    and on PostgreSQL the same partitions: see :func:`plain_insert`)."""
    metadata = MetaData()
    tables = []
    for original in (audit_tables.events, audit_tables.subjects):
        twin = original.to_metadata(metadata, name=f"bench_plain_{original.name}")
        for listener in original.dispatch.after_create:  # the DEFAULT partition
            sqlalchemy_events.listen(twin, "after_create", listener)
        for index in list(twin.indexes):
            index.name = f"bench_plain_{index.name}"
        if twin.primary_key.name:
            twin.primary_key.name = f"bench_plain_{twin.primary_key.name}"
        tables.append(twin)
    return tables[0], tables[1]


async def plain_insert(engine: AsyncEngine, batches: list[list[AuditEvent]]) -> float:
    events_table, subjects_table = _twins(engine)
    # Schema changes are writes: on SQLite a deferred transaction that reads the
    # schema first cannot then wait for the write lock (SQLite answers "database
    # is locked" at once rather than deadlock), and the WAL checkpointer's
    # truncating checkpoint holds that lock for a moment now and then.
    async with writer(engine).begin() as conn:
        await conn.run_sync(events_table.metadata.create_all)
    # The months the migration makes, so the plain rows are routed as the writer's are.
    await AuditPartitions(
        engine, replace(audit_tables, events=events_table, subjects=subjects_table)
    ).upkeep()
    rows = [
        [
            (
                event_row(event),
                [
                    {
                        "customer_id": event.customer_id,
                        "subject_hash": s,
                        "seq": event.seq,
                        "occurred_at": event.occurred_at,
                    }
                    for s in event.subjects
                ],
            )
            for event in batch
        ]
        for batch in batches
    ]
    if engine.dialect.name == "postgresql":
        return await _plain_postgres(engine, events_table, subjects_table, rows)
    started = time.perf_counter()
    for batch in rows:
        async with writer(engine).begin() as conn:
            await conn.execute(insert(events_table), [event for event, _ in batch])
            subject_rows = [row for _, subjects in batch for row in subjects]
            if subject_rows:
                await conn.execute(insert(subjects_table), subject_rows)
    elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed


async def _plain_postgres(
    engine: AsyncEngine, events_table: Table, subjects_table: Table, rows: list[list[Any]]
) -> float:
    """On PostgreSQL the plainest fast way: asyncpg, BEGIN, one statement, COMMIT."""
    columns = list(rows[0][0][0])
    types = [
        "bigint" if c == "seq" else "timestamptz" if c == "occurred_at" else "text" for c in columns
    ]
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=1))
    k = len(columns)
    statement = (
        f"WITH e AS (INSERT INTO {events_table.name} ({', '.join(columns)}) "  # noqa: S608 - fixed names
        f"SELECT * FROM unnest({arrays})) "
        f"INSERT INTO {subjects_table.name} (customer_id, subject_hash, seq, occurred_at) "
        f"SELECT * FROM unnest(${k + 1}::text[], ${k + 2}::text[], ${k + 3}::bigint[], "
        f"${k + 4}::timestamptz[])"
    )
    count = 0
    async with engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        assert pg is not None
        started = time.perf_counter()
        for batch in rows:
            event_columns = [[event[c] for event, _ in batch] for c in columns]
            subjects = [row for _, subject_rows in batch for row in subject_rows]
            subject_columns = [
                [row[c] for row in subjects]
                for c in ("customer_id", "subject_hash", "seq", "occurred_at")
            ]
            async with pg.transaction():
                await pg.execute(statement, *event_columns, *subject_columns)
            count += len(batch)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def bench(url: str, label: str, count: int) -> list[dict[str, Any]]:
    await asyncio.to_thread(upgrade, url)
    # As the runtime makes it: on SQLite no commit checkpoints the WAL, a thread does.
    engine = create_engine(url, pool_size=40, checkpoint_on_commit=False)
    database_file = sqlite_file(engine)
    checkpointer = WalCheckpointer(database_file) if database_file else None
    if checkpointer is not None:
        checkpointer.start()
    rows: list[dict[str, Any]] = []
    try:
        for concurrency in CONCURRENCIES:
            # c=1 commits every event alone: fewer events keep the cell short.
            n = count if concurrency > 1 else max(200, count // 5)
            rate, batches = await through_writer(engine, drafts(n), concurrency)
            plain = await plain_insert(engine, batches)
            mean_batch = n / len(batches)
            base = f"plain insert, {label}, c={concurrency}"
            rows += [
                contract.row(base, plain, "appends/s"),
                contract.row(
                    f"audit appends, {label}, c={concurrency}", rate, "appends/s", (base, plain)
                ),
                contract.row(
                    f"audit events per commit, {label}, c={concurrency}", mean_batch, "count"
                ),
            ]
            print(
                f"  {label:<10} c={concurrency:<3} writer {rate:>9,.0f}/s  plain {plain:>9,.0f}/s"
                f"  ratio {rate / plain:.2f}  events/commit {mean_batch:.1f}",
                flush=True,
            )
            # A fresh database for the next cell, so chain length does not carry over.
            async with writer(engine).begin() as conn:
                for table in (audit_tables.subjects, audit_tables.events, audit_tables.heads):
                    await conn.execute(table.delete())
                await conn.run_sync(_twins(engine)[0].metadata.drop_all)
    finally:
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        await engine.dispose()
    return rows


async def _postgres(sql: str) -> None:
    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per c=32 cell")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one database only")
    options = parser.parse_args()
    rows: list[dict[str, Any]] = []
    if options.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="linkgate-bench-") as tmp:
            rows += await bench(f"sqlite+aiosqlite:///{tmp}/audit.db", "SQLite", options.events)
    if options.only in (None, "postgres"):
        name = f"linkgate_bench_{secrets.token_hex(4)}"
        await _postgres(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            rows += await bench(url, "PostgreSQL", options.events)
        finally:
            await _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if options.only is not None:
        return  # a partial run does not overwrite the published figures
    path = contract.write("audit_append", rows)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
