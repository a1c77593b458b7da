"""The group-commit writer: batching, durability before return, failure fan-out, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    AuditEvent,
    AuditStore,
    AuditTables,
    AuditUnavailable,
    AuditWriter,
    EventDraft,
    define_audit_tables,
)
from gateway.storage.engine import create_engine, writer

MakeDraft = Callable[..., EventDraft]


class GatedStore(AuditStore):
    """Holds each append until released, and records batch sizes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.batches: list[int] = []

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        self.batches.append(len(drafts))
        await self.gate.wait()
        return await super().append(drafts)


class FailingStore(AuditStore):
    """A store whose every commit fails."""

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        raise AuditUnavailable("database is down")


class Batches:
    """A BatchObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.failed: list[tuple[int, str]] = []

    def batch_committed(self, size: int, seconds: float) -> None:
        assert seconds >= 0
        self.committed.append(size)

    def batch_failed(self, size: int, seconds: float, error: str) -> None:
        assert seconds >= 0
        self.failed.append((size, error))


@pytest.fixture
def database_url(tmp_path: object) -> str:
    """The writer's behaviour does not depend on the database: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path}/audit.db"


async def test_record_returns_only_after_commit(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """A recorded event is already visible to another connection when record returns."""
    async with AuditWriter(AuditStore(engine, tables)) as writer:
        event = await writer.record(make_draft())
        async with engine.connect() as conn:
            stored = (
                await conn.execute(select(tables.events.c.hash).where(tables.events.c.seq == 1))
            ).scalar()
    assert event.hash == stored


async def test_waiters_queue_behind_a_commit_and_share_the_next(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Records arriving during a commit wait, unresolved, then go out together in one batch."""
    store = GatedStore(engine, tables)
    async with AuditWriter(store) as writer:
        first = asyncio.create_task(writer.record(make_draft()))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(writer.record(make_draft())) for _ in range(9)]
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in [first, *rest])
        store.gate.set()
        events = await asyncio.gather(first, *rest)
    assert ([1, 9], list(range(1, 11))) == (store.batches, sorted(e.seq for e in events))


async def test_a_cancelled_caller_still_gets_its_event_written(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Cancelling record() while it waits does not take the event back; the others still resolve."""
    store = GatedStore(engine, tables)
    async with AuditWriter(store) as writer:
        cancelled = asyncio.create_task(writer.record(make_draft()))
        other = asyncio.create_task(writer.record(make_draft()))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        store.gate.set()
        event = await other
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(tables.events))).scalar()
    assert (count, event.seq) == (2, 2)


async def test_failed_commit_fails_every_waiter(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """When the batch's commit fails, each caller in it gets AuditUnavailable."""
    async with AuditWriter(FailingStore(engine, tables)) as writer:
        results = await asyncio.gather(
            *(writer.record(make_draft()) for _ in range(5)), return_exceptions=True
        )
    assert [AuditUnavailable] * 5 == [type(r) for r in results]


async def test_the_observer_hears_each_batch_and_pending_counts_what_is_not_durable(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Pending counts the batch appending and those queued behind it, then falls to zero."""
    store = GatedStore(engine, tables)
    batches = Batches()
    async with AuditWriter(store, observer=batches) as writer:
        first = asyncio.create_task(writer.record(make_draft()))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(writer.record(make_draft())) for _ in range(3)]
        await asyncio.sleep(0.01)
        pending_while_gated = writer.pending
        store.gate.set()
        await asyncio.gather(first, *rest)
        assert (pending_while_gated, writer.pending) == (4, 0)
    assert (batches.committed, batches.failed) == ([1, 3], [])


async def test_the_observer_hears_a_failed_batch_with_its_error_type(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """A failed commit is reported with its size and the exception's class, never its text."""
    batches = Batches()
    async with AuditWriter(FailingStore(engine, tables), observer=batches) as writer:
        with pytest.raises(AuditUnavailable):
            await writer.record(make_draft())
        assert writer.pending == 0
    assert (batches.committed, batches.failed) == ([], [(1, "AuditUnavailable")])


async def test_max_batch_bounds_a_transaction(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """No transaction holds more than max_batch events."""
    store = GatedStore(engine, tables)
    store.gate.set()
    async with AuditWriter(store, max_batch=4) as writer:
        await asyncio.gather(*(writer.record(make_draft()) for _ in range(10)))
    assert max(store.batches) <= 4
    assert sum(store.batches) == 10


async def test_stop_writes_what_was_queued_then_refuses(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Stopping flushes accepted records; a record after stop is refused."""
    writer = AuditWriter(AuditStore(engine, tables))
    await writer.start()
    pending = [asyncio.create_task(writer.record(make_draft())) for _ in range(5)]
    await asyncio.sleep(0)
    await writer.stop()
    assert len(await asyncio.gather(*pending)) == 5
    with pytest.raises(AuditUnavailable):
        await writer.record(make_draft())
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(tables.events))).scalar()
    assert count == 5


async def test_record_before_start_is_refused(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """A writer that was never started fails closed instead of queueing forever."""
    with pytest.raises(AuditUnavailable):
        await AuditWriter(AuditStore(engine, tables)).record(make_draft())


@pytest.mark.postgres
async def test_writer_outlives_its_connection(
    postgres_url: str, new_engine: Callable[[str], AsyncEngine], make_draft: MakeDraft
) -> None:
    """When the server ends the writer's held connection, the next record still commits."""
    engine = new_engine(postgres_url)
    metadata = MetaData()
    store = AuditStore(engine, define_audit_tables(metadata))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    async with AuditWriter(store) as writer:
        await writer.record(make_draft())
        async with engine.connect() as conn:
            ended = await conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert ended.scalar() >= 1
        await asyncio.sleep(0.2)  # the server's goodbye reaches the client
        event = await writer.record(make_draft())
    verified = await store.verify("acme")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    assert event.seq == 2
    assert verified.ok


async def test_sqlite_writer_waits_for_the_write_lock_within_the_engines_timeout(
    database_url: str, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """On SQLite the writer's own connection waits for a lock another connection holds,
    as long as the engine's timeout and no longer: then AuditUnavailable, and the
    next record commits once the lock is free."""
    engine = create_engine(database_url, timeout=0.5)
    store = AuditStore(writer(engine), tables, read_engine=engine)
    try:
        async with AuditWriter(store) as audit:
            async with writer(engine).begin() as holder:  # BEGIN IMMEDIATE: the write lock
                await holder.exec_driver_sql("SELECT 1")
                waiting = asyncio.create_task(audit.record(make_draft()))
                with pytest.raises(AuditUnavailable):
                    await waiting
                late = asyncio.create_task(audit.record(make_draft()))
                await asyncio.sleep(0.05)
            event = await late
        verified = await store.verify("acme")
    finally:
        await engine.dispose()
    assert (event.seq, verified.ok) == (1, True)
