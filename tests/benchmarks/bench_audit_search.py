"""Benchmark (not a test): audit subject-search latency over 1,000,000 events.

Run: ``.venv/bin/python tests/benchmarks/bench_audit_search.py [--events N] [--queries Q]
[--only sqlite|postgres]`` (default 1,000,000 events).

One customer holds every event (the worst case for a per-customer index);
each event touches one to three of 20,000 people. Rows are generated once,
already linked (real hashes, via :func:`gateway.audit.link_with_content`),
and bulk-loaded into each database's migrated schema: the audit_events
secondary indexes are dropped and rebuilt from their stored definitions
around the load; SQLite takes one transaction of executemany, PostgreSQL
COPY. Reported: p50/p99 of ``AuditStore.search(subject_hash=…, limit=50)`` —
what ``GET /v1/audit/events?subject=`` runs — against a baseline of a
primary-key lookup of one event in the same run and database. SQLite uses a
temporary file; PostgreSQL a throwaway database on ``LINKGATE_TEST_POSTGRES_URL``.
A full run writes ``var/bench/bench_audit_search.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    Action,
    AuditPartitions,
    AuditStore,
    EventDraft,
    Outcome,
    SubjectHasher,
    genesis_hash,
    link_with_content,
)
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract import REPO, row, write

POSTGRES_URL = os.environ.get(
    "LINKGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
CUSTOMER = "acme"
PEOPLE = 20_000
BATCH = 50_000
DEFAULT_EVENTS = 1_000_000


def _pg_dsn(database: str | None = None) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    if database:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """The URL of a new PostgreSQL database on ``LINKGATE_TEST_POSTGRES_URL``, dropped after."""
    name = f"linkgate_bench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[int, str]]
# The migrated tables' own columns, in their order: the rows below are built to match.
EVENT_COLUMNS = tuple(column.name for column in audit_tables.events.columns)
SUBJECT_COLUMNS = tuple(column.name for column in audit_tables.subjects.columns)


def generate(events: int, subjects: list[str]) -> Rows:
    """``events`` linked events of one customer as row tuples, their subject rows, and the head.

    Generated once and loaded into each database. Subject rows come sorted by
    their primary key, so that loading them appends to the index instead of
    splitting pages all over it.
    """
    rng = random.Random(1)
    prev = genesis_hash(CUSTOMER)
    start_time = datetime.now(UTC) - timedelta(days=300)
    event_rows: list[tuple[Any, ...]] = []
    subject_rows: list[tuple[Any, ...]] = []
    for seq in range(1, events + 1):
        touched = tuple(rng.sample(subjects, rng.randint(1, 3)))
        draft = EventDraft(
            customer_id=CUSTOMER,
            action=Action.RECORDS_READ,
            outcome=Outcome.ALLOWED,
            caller_id=f"svc_{seq % 7}",
            caller_class="internal",
            connection_id=f"con_{seq % 40}",
            provider="sandbox",
            resource="conversations",
            purpose="essential.service",
            record_count=len(touched),
            categories=("user.contact.email", "user.content"),
            subjects=touched,
            trace_id=f"{seq:032x}",
        )
        at = start_time + timedelta(seconds=seq * 25)
        event, content = link_with_content(draft, seq, prev, at)
        prev = event.hash
        event_rows.append(
            (
                CUSTOMER,
                seq,
                at,
                "records.read",
                "allowed",
                draft.caller_id,
                draft.connection_id,
                draft.trace_id,
                content.decode(),
                event.prev_hash,
                event.hash,
            )
        )
        subject_rows += [(CUSTOMER, subject, seq, at) for subject in event.subjects]
        if seq % 50_000 == 0:
            print(f"\r  generated {seq:,}/{events:,} events", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    subject_rows.sort()
    return event_rows, subject_rows, (events, prev)


async def fill(engine: AsyncEngine, url: str, rows: Rows) -> float:
    """Bulk-load ``rows`` into the migrated schema; returns events loaded per second.

    As bulk loaders do, the audit_events secondary indexes are dropped first
    and rebuilt from their own stored definitions afterwards (one sort each
    instead of a million random inserts), so the schema searched is exactly
    the migrated one. SQLite: one transaction of executemany; PostgreSQL: COPY.
    """
    event_rows, subject_rows, (seq, head) = rows
    started = time.perf_counter()
    indexes = await _secondary_indexes(engine)
    async with engine.begin() as conn:
        for name, _definition in indexes:
            await conn.exec_driver_sql(f'DROP INDEX "{name}"')
    if url.startswith("postgresql"):
        # Month partitions for the whole range first, as upkeep would have made
        # them month by month: the rows land where the gateway's appends would.
        await AuditPartitions(engine, audit_tables).create_months(
            event_rows[0][2], event_rows[-1][2]
        )
        await _copy(url, event_rows, subject_rows)
    else:
        await _insert_sqlite(engine, event_rows, subject_rows)
    async with engine.begin() as conn:
        for _name, definition in indexes:
            await conn.exec_driver_sql(definition)
        await conn.execute(
            audit_tables.heads.insert().values(
                customer_id=CUSTOMER, seq=seq, hash=head, occurred_at=event_rows[0][2]
            )
        )
    return len(event_rows) / (time.perf_counter() - started)


async def _secondary_indexes(engine: AsyncEngine) -> list[tuple[str, str]]:
    """Name and CREATE statement of each audit_events index that is not its primary key."""
    if engine.dialect.name == "postgresql":
        sql = (
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'audit_events' AND indexname <> 'pk_audit_events'"
        )
    else:
        sql = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'audit_events' AND sql IS NOT NULL"
        )
    async with engine.connect() as conn:
        return [
            (str(name), str(definition)) for name, definition in await conn.exec_driver_sql(sql)
        ]


async def _insert_sqlite(
    engine: AsyncEngine, event_rows: list[tuple[Any, ...]], subject_rows: list[tuple[Any, ...]]
) -> None:
    # The driver gets what SQLAlchemy's DateTime would have bound, so rows read
    # back exactly as the gateway's own writes do.
    dialect = engine.dialect
    as_stored = audit_tables.events.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert as_stored is not None
    events_sql = _insert_sql("audit_events", EVENT_COLUMNS, "?")
    subjects_sql = _insert_sql("audit_subjects", SUBJECT_COLUMNS, "?")
    async with engine.begin() as conn:
        for start in range(0, len(event_rows), BATCH):
            batch = [(*r[:2], as_stored(r[2]), *r[3:]) for r in event_rows[start : start + BATCH]]
            await conn.exec_driver_sql(events_sql, batch)
            _progress("events", start + len(batch), len(event_rows))
        for start in range(0, len(subject_rows), BATCH):
            batch = [(*r[:3], as_stored(r[3])) for r in subject_rows[start : start + BATCH]]
            await conn.exec_driver_sql(subjects_sql, batch)
            _progress("subject rows", start + BATCH, len(subject_rows))
    print(file=sys.stderr)


async def _copy(
    url: str, event_rows: list[tuple[Any, ...]], subject_rows: list[tuple[Any, ...]]
) -> None:
    conn = await asyncpg.connect(_pg_dsn(make_url(url).database), timeout=5)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "audit_events", records=event_rows, columns=list(EVENT_COLUMNS)
            )
            await conn.copy_records_to_table(
                "audit_subjects", records=subject_rows, columns=list(SUBJECT_COLUMNS)
            )
    finally:
        await conn.close()


def _insert_sql(table: str, columns: tuple[str, ...], marker: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"  # noqa: S608 - fixed names
    )


def _progress(what: str, done: int, total: int) -> None:
    print(f"\r  loaded {min(done, total):,}/{total:,} {what}", end="", file=sys.stderr, flush=True)


async def timed(queries: int, run: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    for i in range(10):  # warm the pool and the caches
        await run(i)
    samples = []
    for i in range(queries):
        started = time.perf_counter()
        await run(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def bench(
    url: str, label: str, rows: Rows, hasher: SubjectHasher, people: list[str], queries: int
) -> list[dict[str, Any]]:
    """Load ``rows`` into a migrated database at ``url`` and time the two queries."""
    started = time.perf_counter()
    events = len(rows[0])
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    try:
        rate = await fill(engine, url, rows)
        if url.startswith("postgresql"):
            async with engine.begin() as conn:  # committed, else the statistics roll back
                await conn.exec_driver_sql("ANALYZE")
        store = AuditStore(engine, audit_tables)
        rng = random.Random(2)
        e = audit_tables.events
        found: list[int] = []  # events per subject search: a search that finds none proves little

        async def pk(_i: int) -> object:
            async with engine.connect() as conn:
                seq = rng.randint(1, events)
                return (
                    await conn.execute(select(e).where(e.c.customer_id == CUSTOMER, e.c.seq == seq))
                ).first()

        async def by_subject(_i: int) -> object:
            page = await store.search(
                [CUSTOMER], subject_hash=hasher.hash(CUSTOMER, rng.choice(people)), limit=50
            )
            found.append(len(page.events))
            return page.events

        base50, base99 = await timed(queries, pk)
        s50, s99 = await timed(queries, by_subject)
    finally:
        await engine.dispose()
    elapsed = time.perf_counter() - started
    print(
        f"{label}: {events:,} events (loaded at {rate:,.0f}/s, {elapsed:.0f} s in all); "
        f"primary-key lookup p50 {base50:.2f} ms p99 {base99:.2f} ms; "
        f"subject search (limit 50) p50 {s50:.2f} ms p99 {s99:.2f} ms "
        f"= {s50 / base50:.1f}x / {s99 / base99:.1f}x the baseline; "
        f"{statistics.mean(found):.1f} events per search, {found.count(0)} found none",
        flush=True,
    )
    at = f"at {events:,} events"
    base = {q: f"{label} primary-key lookup {q} {at}" for q in ("p50", "p99")}
    return [
        row(f"{label} events loaded per second (bulk load)", rate, "appends/s"),
        row(base["p50"], base50, "ms"),
        row(base["p99"], base99, "ms"),
        row(f"{label} subject search p50 {at}", s50, "ms", (base["p50"], base50)),
        row(f"{label} subject search p99 {at}", s99, "ms", (base["p99"], base99)),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    hasher = SubjectHasher(secrets.token_bytes(32))
    people = [f"email:person{i}@customer.example" for i in range(PEOPLE)]
    started = time.perf_counter()
    rows = generate(args.events, [hasher.hash(CUSTOMER, p) for p in people])
    print(f"generated {args.events:,} linked events in {time.perf_counter() - started:.0f} s")
    results: list[dict[str, Any]] = []
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            results += await bench(url, "SQLite", rows, hasher, people, args.queries)
    if args.only != "sqlite":
        async with throwaway_postgres() as url:
            results += await bench(url, "PostgreSQL", rows, hasher, people, args.queries)
    if args.only:
        return  # a partial run does not overwrite the published figures
    path = write("audit_search", results)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
