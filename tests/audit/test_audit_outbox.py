"""The audit outbox: an event committed with its change reaches the chain exactly once.

Real SQLite and PostgreSQL. The outbox row is written by the caller's own
transaction; the group-commit writer appends it after the commit, and a
drain appends whatever a failed append or a crash left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    Action,
    AuditOutbox,
    AuditStore,
    AuditTables,
    AuditWriter,
    CheckpointKeys,
    EventDraft,
    Outcome,
)
from gateway.audit.outbox import decode_draft, encode_draft

MakeDraft = Callable[..., EventDraft]

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def refreshed(customer_id: str = "acme", connection_id: str = "con_1") -> EventDraft:
    return EventDraft(
        customer_id=customer_id,
        action=Action.CONNECTION_REFRESHED,
        outcome=Outcome.ALLOWED,
        connection_id=connection_id,
        provider="sandbox",
    )


async def outbox_rows(engine: AsyncEngine, tables: AuditTables) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(tables.outbox))).scalar())


async def chain(store: AuditStore, customer_id: str = "acme") -> list[tuple[str, str | None]]:
    return [(str(e.action), e.connection_id) async for e in store.events(customer_id)]


def test_a_draft_survives_its_outbox_encoding(make_draft: MakeDraft) -> None:
    draft = make_draft(who=("ann@example.com", "+15550100"))
    assert decode_draft(encode_draft(draft)) == draft


async def test_an_entry_rolled_back_with_its_change_never_reaches_the_chain(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore
) -> None:
    async with AuditWriter(store) as writer:
        outbox = AuditOutbox(engine, tables, store, writer)
        try:
            async with engine.begin() as conn:
                await outbox.add(conn, refreshed())
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
        assert await outbox.drain() == 0
    assert await outbox_rows(engine, tables) == 0
    assert await chain(store) == []


async def test_a_delivered_entry_is_in_the_chain_at_the_time_it_was_written(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys
) -> None:
    store_clock = Clock(T0 + timedelta(seconds=5))  # the append comes later than the commit
    store = AuditStore(engine, tables, keys=keys, clock=store_clock)
    async with AuditWriter(store) as writer:
        outbox = AuditOutbox(engine, tables, store, writer, clock=Clock(T0))
        async with engine.begin() as conn:
            entry = await outbox.add(conn, refreshed())
        event = await outbox.deliver(entry)
        assert event is not None
        assert event.occurred_at == T0
        assert await outbox.drain() == 0  # nothing left behind, nothing appended twice
    assert await outbox_rows(engine, tables) == 0
    assert await chain(store) == [("connection.refreshed", "con_1")]
    assert (await store.verify("acme")).ok


async def test_an_entry_whose_append_failed_is_drained_exactly_once(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore
) -> None:
    writer = AuditWriter(store)  # never started: every append fails as when the store is down
    outbox = AuditOutbox(engine, tables, store, writer, clock=Clock(T0))
    async with engine.begin() as conn:
        entry = await outbox.add(conn, refreshed())
    assert await outbox.deliver(entry) is None  # no error for the caller: the event is durable
    assert await outbox_rows(engine, tables) == 1
    assert await chain(store) == []

    assert await outbox.drain() == 1
    assert await outbox.drain() == 0
    assert await chain(store) == [("connection.refreshed", "con_1")]
    assert [e.occurred_at async for e in store.events("acme")] == [T0]
    assert await outbox_rows(engine, tables) == 0
    # The writer, come back, finds the entry appended and does not append it again.
    async with writer:
        assert await writer.record_outboxed(entry) is None
    assert await chain(store) == [("connection.refreshed", "con_1")]
    assert (await store.verify("acme")).ok


async def test_a_late_entry_takes_the_chain_time_rather_than_run_time_backwards(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """Drained after a later event of its customer, an entry is placed after it, at its time."""
    later = T0 + timedelta(minutes=3)
    store = AuditStore(engine, tables, keys=keys, clock=Clock(later))
    outbox = AuditOutbox(engine, tables, store, AuditWriter(store), clock=Clock(T0))
    async with engine.begin() as conn:
        await outbox.add(conn, refreshed())
    await store.append([make_draft()])  # a read, appended while the entry waited
    assert await outbox.drain() == 1
    events = [e async for e in store.events("acme")]
    assert [(str(e.action), e.occurred_at) for e in events] == [
        ("records.read", later),
        ("connection.refreshed", later),
    ]
    assert (await store.verify("acme")).ok


async def test_a_batch_mixing_entries_and_drafts_keeps_each_callers_event(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore, make_draft: MakeDraft
) -> None:
    async with AuditWriter(store) as writer:
        outbox = AuditOutbox(engine, tables, store, writer)
        async with engine.begin() as conn:
            entries = [
                await outbox.add(conn, refreshed(connection_id=f"con_{n}")) for n in range(3)
            ]
        results = await asyncio.gather(
            writer.record(make_draft()),
            *(outbox.deliver(entry) for entry in entries),
            writer.record(make_draft(connection_id="conn-2")),
        )
    assert all(result is not None for result in results)
    assert sorted(await chain(store)) == [
        ("connection.refreshed", "con_0"),
        ("connection.refreshed", "con_1"),
        ("connection.refreshed", "con_2"),
        ("records.read", "conn-1"),
        ("records.read", "conn-2"),
    ]
    assert await outbox_rows(engine, tables) == 0
    assert (await store.verify("acme")).ok


async def test_replicas_draining_at_once_append_each_entry_once(
    database_url: str,
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    new_engine: Callable[[str], AsyncEngine],
) -> None:
    """Two replicas (own engines, own stores) drain the same backlog concurrently."""
    engines = [engine, new_engine(database_url)]
    stores = [AuditStore(e, tables, keys=keys) for e in engines]
    outboxes = [
        AuditOutbox(e, tables, s, AuditWriter(s)) for e, s in zip(engines, stores, strict=True)
    ]
    customers = ("acme", "globex")
    async with engine.begin() as conn:
        for n in range(60):
            await outboxes[0].add(conn, refreshed(customers[n % 2], f"con_{n}"))
    drained = await asyncio.gather(
        *(outbox.drain(batch=7) for outbox in outboxes for _ in range(2))
    )
    assert sum(drained) == 60
    assert await outbox_rows(engine, tables) == 0
    for customer_id in customers:
        events = await chain(stores[0], customer_id)
        assert sorted(connection for _, connection in events) == sorted(
            f"con_{n}" for n in range(60) if customers[n % 2] == customer_id
        )
        assert (await stores[0].verify(customer_id)).ok


async def test_a_drain_while_the_writer_appends_takes_a_connection_of_its_own(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore, make_draft: MakeDraft
) -> None:
    """The periodic drain runs beside the writer, on the same store: neither breaks the
    other's appends, and every event is in the chain once."""
    async with AuditWriter(store) as writer:
        outbox = AuditOutbox(engine, tables, store, writer)
        async with engine.begin() as conn:
            for n in range(100):
                await outbox.add(conn, refreshed(connection_id=f"con_{n}"))

        async def records() -> list[object]:
            return [await writer.record(make_draft()) for _ in range(100)]

        async def drains() -> int:
            return sum([await outbox.drain(batch=5) for _ in range(3)])

        read, more_read, drained = await asyncio.gather(records(), records(), drains())
    assert (len(read) + len(more_read), drained) == (200, 100)
    events = await chain(store)
    assert sorted(c for a, c in events if a == "connection.refreshed") == sorted(
        f"con_{n}" for n in range(100)
    )
    assert len(events) == 300
    assert await outbox_rows(engine, tables) == 0
    assert (await store.verify("acme")).ok
