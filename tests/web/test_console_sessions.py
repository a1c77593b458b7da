"""Console sessions on SQLite and PostgreSQL: stored hashed, idle and absolute expiry, revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.callers import Caller, CallerKind, create_caller, revoke_caller
from gateway.storage import create_engine
from gateway.storage.schema import console_tables
from gateway.web.console.sessions import ConsoleSessionStore

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _auditor(engine: AsyncEngine) -> Caller:
    caller, _key = await create_caller(
        engine, kind=CallerKind.AUDITOR, name="privacy", customers=["acme"]
    )
    return caller


async def test_a_session_is_stored_only_as_a_hash_and_finds_its_auditor(
    engine: AsyncEngine,
) -> None:
    """The cookie value opens the session; the table holds its hash, never the value."""
    auditor = await _auditor(engine)
    store = ConsoleSessionStore(engine, console_tables)

    session_id, _expires = await store.create(auditor)
    found = await store.get(session_id)
    async with engine.connect() as conn:
        stored = list((await conn.execute(select(console_tables.sessions))).mappings())

    assert found is not None
    assert (found.caller.id, found.caller.customers) == (auditor.id, frozenset({"acme"}))
    assert len(session_id) >= 43
    assert [row["id_hash"] for row in stored] == [found.key]
    assert session_id not in str(stored)


async def test_idle_and_absolute_timeouts_end_a_session(engine: AsyncEngine) -> None:
    """Use keeps a session alive for 8 idle hours, but never past 12 hours in all."""
    auditor = await _auditor(engine)
    clock = Clock()
    store = ConsoleSessionStore(engine, console_tables, clock=clock)
    idle, _ = await store.create(auditor)
    busy, _ = await store.create(auditor)

    for hours in (4, 8, 11):
        clock.now = START + timedelta(hours=hours)
        assert await store.get(busy) is not None
    clock.now = START + timedelta(hours=8, minutes=1)
    idle_after = await store.get(idle)
    clock.now = START + timedelta(hours=12, minutes=1)
    busy_after = await store.get(busy)

    assert idle_after is None
    assert busy_after is None


async def test_sign_out_and_revocation_end_a_session(engine: AsyncEngine) -> None:
    """An ended session and a revoked credential's session open nothing; nor does garbage."""
    auditor = await _auditor(engine)
    store = ConsoleSessionStore(engine, console_tables)
    ended, _ = await store.create(auditor)
    kept, _ = await store.create(auditor)

    session = await store.get(ended)
    assert session is not None
    await store.end(session.key)
    assert await store.get(ended) is None
    assert await store.get(kept) is not None
    await revoke_caller(engine, auditor.id)

    assert await store.get(kept) is None
    assert await store.get("") is None
    assert await store.get("x" * 500) is None
