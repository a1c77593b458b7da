"""Verification reads the chain in batches, each its own short read transaction, and
gives the verdict one snapshot would (real SQLite and PostgreSQL).

What happens between two batches (an append, a prune, a WAL checkpoint) is run
by a store that calls back after each batch it reads: no timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    AuditStore,
    AuditTables,
    AuditUnavailable,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    VerifyResult,
)
from gateway.storage import create_engine, writer
from gateway.storage.wal import WalCheckpointer

MakeDraft = Callable[..., EventDraft]
BetweenBatches = Callable[[int, int], Awaitable[None]]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine as the gateway makes it: on SQLite every read runs in a ``BEGIN``
    transaction, which pins the WAL for as long as it lasts."""
    engine = create_engine(database_url, checkpoint_on_commit=False)
    yield engine
    await engine.dispose()


class Clock:
    """A controllable UTC clock that ticks one second per reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def cutoff(self) -> datetime:
        """A retention cutoff after everything signed so far, before anything signed next."""
        return self.now + timedelta(milliseconds=500)


class CallingBackStore(AuditStore):
    """Calls ``between_batches(after_seq, last_seq)`` after each batch its verification
    reads, once the batch's read transaction has ended."""

    def __init__(self, *args: Any, between_batches: BetweenBatches, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.between_batches = between_batches

    async def _feed_batch(self, *args: Any, **kwargs: Any) -> int | None:
        last: int | None = await super()._feed_batch(*args, **kwargs)
        if last is not None:
            await self.between_batches(kwargs["after_seq"], last)
        return last


def gateway_store(engine: AsyncEngine, tables: AuditTables, **kwargs: Any) -> AuditStore:
    """A store wired as the gateway wires it: writes IMMEDIATE, reads on the plain engine."""
    return AuditStore(writer(engine), tables, read_engine=engine, **kwargs)


def calling_back(
    engine: AsyncEngine, tables: AuditTables, between_batches: BetweenBatches, **kwargs: Any
) -> CallingBackStore:
    return CallingBackStore(
        writer(engine), tables, read_engine=engine, between_batches=between_batches, **kwargs
    )


async def fill(store: AuditStore, make_draft: MakeDraft, n: int) -> None:
    for i in range(n):
        await store.append([make_draft("acme", who=(f"email:p{i % 3}@x.example",))])


async def test_every_batch_size_gives_the_one_batch_verdict(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """Checkpointing and pruning in batches of one event work, and verification in
    batches of any size gives what one batch over the whole chain gives."""
    clock = Clock()
    store = gateway_store(engine, tables, keys=keys, clock=clock, verify_batch=1)
    await fill(store, make_draft, 4)
    assert await store.checkpoint(signer, "acme") is not None  # seq 4
    await fill(store, make_draft, 3)
    cutoff = clock.cutoff()
    await fill(store, make_draft, 3)
    last = await store.checkpoint(signer, "acme")  # seq 10, after the cutoff
    deleted = await store.prune("acme", cutoff)
    assert last is not None
    results = [
        await gateway_store(engine, tables, keys=keys, verify_batch=size).verify("acme")
        for size in (1, 2, 3, 6, 7, 1000)
    ]
    assert (deleted, results) == (4, [VerifyResult(True, 6, 10, last.head_hash)] * 6)


async def test_a_verification_stops_at_the_head_it_read_first_while_appends_go_on(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """Events appended between batches are past the head read at the start: the verdict
    is the one for that head, and the next verification covers them."""
    store = gateway_store(engine, tables, keys=keys)
    await fill(store, make_draft, 7)

    async def append(_after: int, _last: int) -> None:
        await fill(store, make_draft, 2)

    verifying = calling_back(engine, tables, append, keys=keys, verify_batch=3)
    during = await verifying.verify("acme")
    after = await store.verify("acme")
    assert (during.ok, during.events_checked, during.head_seq) == (True, 7, 7)
    assert (after.ok, after.events_checked, after.head_seq) == (True, 13, 13)


def wal_truncated(checkpointer: WalCheckpointer, database: str) -> tuple[bool, int]:
    """One pass of a checkpointer bound to truncate: did it empty the WAL, and its size after."""
    return checkpointer.run_once().truncated, Path(f"{database}-wal").stat().st_size


async def sessions_in_a_transaction(engine: AsyncEngine) -> int:
    """How many other sessions on the database sit idle inside a transaction."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
    return int(count or 0)


async def test_nothing_is_held_between_batches(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """Between two batches of a verification, while appends go on, the gateway's
    checkpointer truncates SQLite's WAL (no reader pins it), and on PostgreSQL no
    session sits inside a transaction (none holds vacuum back)."""
    store = gateway_store(engine, tables, keys=keys)
    await fill(store, make_draft, 20)
    database = engine.url.database or ""
    checkpointer = WalCheckpointer(database, max_wal_pages=0)
    seen: list[object] = []

    async def check(_after: int, _last: int) -> None:
        await fill(store, make_draft, 1)  # written since the last pass: a WAL to truncate
        if engine.dialect.name == "sqlite":
            seen.append(await asyncio.to_thread(wal_truncated, checkpointer, database))
        else:
            seen.append(await sessions_in_a_transaction(engine))

    verifying = calling_back(engine, tables, check, keys=keys, verify_batch=5)
    try:
        result = await verifying.verify("acme")
    finally:
        checkpointer.stop()
    assert seen == [(True, 0) if engine.dialect.name == "sqlite" else 0] * 4
    assert (result.ok, result.events_checked, result.head_seq) == (True, 20, 20)


async def test_a_prune_between_batches_restarts_the_verification_instead_of_breaking_it(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """A prune that deletes events the verification has yet to read leaves a gap in
    what it reads; the verification starts over from the checkpoint the prune left
    and gives the verdict of a verification run after the prune."""
    clock = Clock()
    store = gateway_store(engine, tables, keys=keys, clock=clock)
    await fill(store, make_draft, 4)
    await store.checkpoint(signer, "acme")
    await fill(store, make_draft, 4)
    await store.checkpoint(signer, "acme")  # seq 8
    cutoff = clock.cutoff()
    await fill(store, make_draft, 4)
    pruned: list[int] = []

    async def prune_once(_after: int, last: int) -> None:
        if last == 2 and not pruned:
            pruned.append(await store.prune("acme", cutoff))

    verifying = calling_back(engine, tables, prune_once, keys=keys, verify_batch=2)
    result = await verifying.verify("acme")
    assert (pruned, result) == ([8], await store.verify("acme"))
    assert (result.ok, result.events_checked, result.head_seq) == (True, 4, 12)


async def test_prunes_that_keep_overtaking_a_verification_are_reported_as_such(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """When every attempt is overtaken by another prune, verification says so (the log is
    unavailable for verifying now), never that the chain is broken."""
    clock = Clock()
    store = gateway_store(engine, tables, keys=keys, clock=clock)
    cutoffs = []
    for _ in range(3):
        await fill(store, make_draft, 2)
        await store.checkpoint(signer, "acme")  # seq 2, 4, 6
        cutoffs.append(clock.cutoff())
    await fill(store, make_draft, 2)

    async def prune_after_the_first_batch(after: int, _last: int) -> None:
        if after == 0 and cutoffs:
            await store.prune("acme", cutoffs.pop(0))

    verifying = calling_back(engine, tables, prune_after_the_first_batch, keys=keys, verify_batch=1)
    with pytest.raises(AuditUnavailable, match="prunes kept deleting"):
        await verifying.verify("acme")
    result = await verifying.verify("acme")
    assert (cutoffs, result.ok, result.events_checked, result.head_seq) == ([], True, 2, 8)


async def test_a_checkpoint_overtaken_by_a_prune_returns_the_newer_checkpoint(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """Another signer checkpoints the head and a prune deletes up to it while this
    checkpoint verifies: it returns that checkpoint instead of refusing to sign."""
    store = gateway_store(engine, tables, keys=keys)
    await fill(store, make_draft, 6)
    theirs: list[Any] = []

    async def sign_and_prune(after: int, _last: int) -> None:
        if not theirs:
            theirs.append(await store.checkpoint(signer, "acme"))
            theirs.append(await store.prune("acme", datetime.now(UTC) + timedelta(days=1)))

    signing = calling_back(engine, tables, sign_and_prune, keys=keys, verify_batch=2)
    ours = await signing.checkpoint(signer, "acme")
    assert ours is not None
    assert ([ours, 6], ours.seq) == (theirs, 6)
    assert await store.verify("acme") == VerifyResult(True, 0, 6, ours.head_hash)


async def test_a_prune_overtaken_by_another_prune_deletes_nothing_more(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """A prune whose verification another prune overtakes (deleting the events it was
    reading) finds nothing left to delete, instead of refusing on a gap."""
    store = gateway_store(engine, tables, keys=keys)
    await fill(store, make_draft, 6)
    await store.checkpoint(signer, "acme")
    await fill(store, make_draft, 2)
    cutoff = datetime.now(UTC) + timedelta(days=1)
    theirs: list[int] = []

    async def prune_first(_after: int, _last: int) -> None:
        if not theirs:
            theirs.append(await store.prune("acme", cutoff))

    pruning = calling_back(engine, tables, prune_first, keys=keys, verify_batch=2)
    ours = await pruning.prune("acme", cutoff)
    result = await store.verify("acme")
    assert (ours, theirs) == (0, [6])
    assert (result.ok, result.events_checked, result.head_seq) == (True, 2, 8)
