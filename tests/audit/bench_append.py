"""Benchmark (not a test): audit append throughput, one commit per event vs group commit.

Run: ``.venv/bin/python tests/audit/bench_append.py [--events N] [--tasks C]``.
SQLite uses a temporary WAL file; PostgreSQL uses a throwaway database on
``LINKGATE_TEST_POSTGRES_URL`` (skipped when unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.audit import Action, AuditStore, AuditWriter, EventDraft, Outcome, define_audit_tables

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def draft(i: int) -> EventDraft:
    return EventDraft(
        customer_id="acme",
        action=Action.RECORDS_READ,
        outcome=Outcome.ALLOWED,
        caller_id="svc-crm",
        caller_class="internal",
        connection_id="conn-1",
        provider="facebook",
        resource="page_messages",
        purpose="support",
        record_count=i % 50,
        categories=("user.contact.email", "user.content"),
        dropped={"public-or-direct": 1},
        subjects=(f"hmac-sha256:{i % 1000:064x}",),
        trace_id=f"{i:032x}",
        trace_summary={"spans": [{"name": "fetch", "duration_us": 900, "status": "ok"}]},
    )


def _wal(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def measure(name: str, engine: AsyncEngine, events: int, tasks: int) -> None:
    async def fresh() -> AuditStore:
        metadata = MetaData()
        tables = define_audit_tables(metadata)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        return AuditStore(engine, tables)

    async def timed(label: str, n: int, run: Callable[[], Awaitable[None]]) -> None:
        start = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - start
        print(f"{name:10} {label:44} {n:7d} events {n / elapsed:10.0f} events/s")

    store = await fresh()
    single = max(events // 10, 200)

    async def one_at_a_time() -> None:
        for i in range(single):
            await store.append([draft(i)])

    await timed("one commit per event (sequential)", single, one_at_a_time)

    store = await fresh()

    async def concurrent_direct() -> None:
        per = single // tasks or 1

        async def worker(k: int) -> None:
            for i in range(per):
                await store.append([draft(k * per + i)])

        await asyncio.gather(*(worker(k) for k in range(tasks)))

    await timed(f"one commit per event ({tasks} tasks, no writer)", single, concurrent_direct)

    store = await fresh()

    async def group() -> None:
        async with AuditWriter(store) as writer:
            per = events // tasks

            async def worker(k: int) -> None:
                for i in range(per):
                    await writer.record(draft(k * per + i))

            await asyncio.gather(*(worker(k) for k in range(tasks)))

    await timed(f"group commit via AuditWriter ({tasks} tasks)", events, group)
    result = await store.verify("acme")
    assert result.ok, result.problem


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
        event.listen(engine.sync_engine, "connect", _wal)
        await measure("sqlite", engine, args.events, args.tasks)
        await engine.dispose()
    base = make_url(os.environ.get("LINKGATE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    params = {"host": base.host, "port": base.port or 5432, "user": base.username}
    name = f"linkgate_audit_bench_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(**params, password=base.password, database=base.database)
    except OSError as exc:
        print(f"postgresql skipped: {exc}")
        return
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        engine = create_async_engine(
            base.set(database=name).render_as_string(hide_password=False),
            pool_size=20,
            max_overflow=10,
        )
        await measure("postgresql", engine, args.events, args.tasks)
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
