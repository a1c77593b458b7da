"""Benchmark (not a test): audit subject-search latency over 1,000,000 events.

Run: ``.venv/bin/python tests/benchmarks/bench_audit_search.py [--events N] [--queries Q]``.

One customer holds every event (the worst case for a per-customer index);
each event touches one to three of 20,000 people. Rows are generated already
linked (real hashes, via :func:`gateway.audit.link_with_content`) and written
with bulk inserts; the schema is the migrated one. Reported: p50/p99 of
``AuditStore.search(subject_hash=…, limit=50)`` — what ``GET /v1/audit/events
?subject=`` runs — against a baseline of a primary-key lookup of one event in
the same run and database. SQLite uses a temporary file; PostgreSQL a
throwaway database on ``LINKGATE_TEST_POSTGRES_URL``.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    Action,
    AuditStore,
    EventDraft,
    Outcome,
    SubjectHasher,
    genesis_hash,
    link_with_content,
)
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "LINKGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
CUSTOMER = "acme"
PEOPLE = 20_000
BATCH = 5_000


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


async def fill(engine: AsyncEngine, events: int, subjects: list[str]) -> float:
    """Write ``events`` linked events for one customer; returns rows per second."""
    rng = random.Random(1)
    prev = genesis_hash(CUSTOMER)
    start_time = datetime.now(UTC) - timedelta(days=300)
    started = time.perf_counter()
    seq = 0
    while seq < events:
        event_rows: list[dict[str, Any]] = []
        subject_rows: list[dict[str, Any]] = []
        for _ in range(min(BATCH, events - seq)):
            seq += 1
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
                {
                    "customer_id": CUSTOMER,
                    "seq": seq,
                    "occurred_at": at,
                    "action": "records.read",
                    "outcome": "allowed",
                    "caller_id": draft.caller_id,
                    "connection_id": draft.connection_id,
                    "trace_id": draft.trace_id,
                    "content": content.decode(),
                    "prev_hash": event.prev_hash,
                    "hash": event.hash,
                }
            )
            subject_rows += [
                {"customer_id": CUSTOMER, "subject_hash": s, "seq": seq} for s in event.subjects
            ]
        async with engine.begin() as conn:
            await conn.execute(audit_tables.events.insert(), event_rows)
            await conn.execute(audit_tables.subjects.insert(), subject_rows)
        print(f"\r  {seq}/{events} events", end="", file=sys.stderr, flush=True)
    async with engine.begin() as conn:
        await conn.execute(
            audit_tables.heads.insert().values(
                customer_id=CUSTOMER, seq=seq, hash=prev, occurred_at=start_time
            )
        )
    print(file=sys.stderr)
    return events / (time.perf_counter() - started)


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


async def bench(url: str, label: str, events: int, queries: int) -> None:
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    try:
        hasher = SubjectHasher(secrets.token_bytes(32))
        people = [f"email:person{i}@customer.example" for i in range(PEOPLE)]
        subjects = [hasher.hash(CUSTOMER, p) for p in people]
        rate = await fill(engine, events, subjects)
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                await conn.exec_driver_sql("ANALYZE")
        store = AuditStore(engine, audit_tables)
        rng = random.Random(2)
        e = audit_tables.events

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
            return page.events

        base50, base99 = await timed(queries, pk)
        s50, s99 = await timed(queries, by_subject)
        print(
            f"{label}: {events:,} events (filled at {rate:,.0f}/s); "
            f"primary-key lookup p50 {base50:.2f} ms p99 {base99:.2f} ms; "
            f"subject search (limit 50) p50 {s50:.2f} ms p99 {s99:.2f} ms "
            f"= {s50 / base50:.1f}x / {s99 / base99:.1f}x the baseline"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            await bench(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite", args.events, args.queries)
    if args.only != "sqlite":
        name = f"linkgate_bench_{secrets.token_hex(4)}"
        await _admin(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            await bench(url, "PostgreSQL", args.events, args.queries)
        finally:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
