"""Checkpoints and pruning verify the chain without holding the write lock, and never
sign or delete what they did not verify (real SQLite and PostgreSQL).

A long verification of a large log is stood in for by a store that pauses
inside its verification until the test releases it: no timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditStore, AuditTables, CheckpointKeys, CheckpointSigner, EventDraft

MakeDraft = Callable[..., EventDraft]
# How long a step may wait before the test calls it blocked (under the old
# behaviour it waited for the whole verification): a hang guard, not a measurement.
BLOCKED = 20.0


class PausingStore(AuditStore):
    """Pauses in its next chain verification, once armed, until released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed = False
        self.verifying = asyncio.Event()
        self.release = asyncio.Event()

    def pause_next_verification(self) -> None:
        self.armed = True

    async def _feed(self, *args: Any, **kwargs: Any) -> None:
        if self.armed:
            self.armed = False
            self.verifying.set()
            await self.release.wait()
        await super()._feed(*args, **kwargs)


async def fill(store: AuditStore, make_draft: MakeDraft, n: int) -> None:
    for _ in range(n):
        await store.append([make_draft("acme")])


def pausing(engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys) -> PausingStore:
    store = PausingStore(engine, tables, keys=keys)
    store.pause_next_verification()
    return store


async def test_appends_and_reads_go_on_while_a_checkpoint_verifies(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """An audited request's append and an audit search complete during a checkpoint's
    verification, and the checkpoint signs the head it verified, not the event
    appended meanwhile; the next checkpoint covers that one."""
    store = AuditStore(engine, tables, keys=keys)
    await fill(store, make_draft, 5)
    signing_store = pausing(engine, tables, keys)
    signing = asyncio.create_task(signing_store.checkpoint(signer, "acme"))
    await signing_store.verifying.wait()
    try:
        (appended,) = await asyncio.wait_for(store.append([make_draft("acme")]), BLOCKED)
        page = await asyncio.wait_for(store.search(["acme"], limit=1), BLOCKED)
    finally:
        signing_store.release.set()
    checkpoint = await signing
    assert checkpoint is not None
    assert (appended.seq, [e.seq for e in page.events], checkpoint.seq) == (6, [6], 5)
    assert checkpoint.head_hash == appended.prev_hash
    next_checkpoint = await store.checkpoint(signer, "acme")
    assert next_checkpoint is not None
    assert (next_checkpoint.seq, next_checkpoint.prev_checkpoint_hash) == (6, checkpoint.hash)
    result = await store.verify("acme")
    assert (result.ok, result.events_checked) == (True, 6)


async def test_appends_go_on_while_a_prune_verifies(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """An append completes during a prune's verification; the prune then deletes
    exactly the events up to the checkpoint it verified."""
    store = AuditStore(engine, tables, keys=keys)
    await fill(store, make_draft, 5)
    await store.checkpoint(signer, "acme")
    await fill(store, make_draft, 2)
    pruning_store = pausing(engine, tables, keys)
    pruning = asyncio.create_task(
        pruning_store.prune("acme", datetime.now(UTC) + timedelta(days=1))
    )
    await pruning_store.verifying.wait()
    try:
        (appended,) = await asyncio.wait_for(store.append([make_draft("acme")]), BLOCKED)
    finally:
        pruning_store.release.set()
    deleted = await pruning
    result = await store.verify("acme")
    page = await store.search(["acme"], limit=100)
    assert (appended.seq, deleted, result.ok) == (8, 5, True)
    assert [e.seq for e in page.events] == [8, 7, 6]


async def test_a_checkpoint_signed_first_by_another_signer_is_not_forked(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """When another signer checkpoints a later head while this one verifies, this one
    returns that checkpoint instead of signing an older head after it."""
    store = AuditStore(engine, tables, keys=keys)
    await fill(store, make_draft, 5)
    slow = pausing(engine, tables, keys)
    signing = asyncio.create_task(slow.checkpoint(signer, "acme"))
    await slow.verifying.wait()
    try:
        await asyncio.wait_for(fill(store, make_draft, 1), BLOCKED)
        theirs = await asyncio.wait_for(store.checkpoint(signer, "acme"), BLOCKED)
    finally:
        slow.release.set()
    ours = await signing
    assert theirs is not None
    assert (ours, theirs.seq, await store.checkpoints("acme")) == (theirs, 6, [theirs])
    assert (await store.verify("acme")).ok


async def test_a_checkpoint_signed_first_at_an_older_head_is_built_on(
    engine: AsyncEngine,
    tables: AuditTables,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """When another signer checkpoints an older head while this one verifies a newer
    one, this one verifies again from that checkpoint and signs after it."""
    store = AuditStore(engine, tables, keys=keys)
    await fill(store, make_draft, 5)
    first = pausing(engine, tables, keys)
    first_signing = asyncio.create_task(first.checkpoint(signer, "acme"))
    await first.verifying.wait()  # verifying head 5
    try:
        await asyncio.wait_for(fill(store, make_draft, 1), BLOCKED)
        second = pausing(engine, tables, keys)
        second_signing = asyncio.create_task(second.checkpoint(signer, "acme"))
        await asyncio.wait_for(second.verifying.wait(), BLOCKED)  # verifying head 6
    finally:
        first.release.set()
    older = await first_signing
    second.release.set()
    newer = await second_signing
    assert older is not None
    assert newer is not None
    assert (older.seq, newer.seq, newer.prev_checkpoint_hash) == (5, 6, older.hash)
    assert await store.checkpoints("acme") == [older, newer]
    assert (await store.verify("acme")).ok
