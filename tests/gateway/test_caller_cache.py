"""The service-key cache: fewer database reads, revocation still honoured within its TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.callers import (
    CALLER_CACHE_TTL,
    Caller,
    CallerCache,
    CallerKind,
    authenticate,
    create_caller,
    hash_key,
    revoke_caller,
)
from gateway.errors import Unauthenticated
from gateway.storage import create_engine
from gateway.storage.migrate import upgrade


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(upgrade, database_url)  # Alembic runs its own event loop
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def test_revocation_window_is_a_few_seconds() -> None:
    """The promise: a revoked key stops working everywhere within seconds."""
    assert 0 < CALLER_CACHE_TTL <= 10


async def test_revoked_key_stops_working_within_the_ttl(engine: AsyncEngine) -> None:
    """Revoked in the database (CLI, another replica): honoured once the entry expires."""
    clock = FakeClock()
    cache = CallerCache(5.0, clock=clock)
    caller, key = await create_caller(
        engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"]
    )
    header = f"Bearer {key}"
    assert (await authenticate(engine, header, CallerKind.SERVICE, cache=cache)).id == caller.id

    await revoke_caller(engine, caller.id)
    clock.now += 4.9  # still inside the window: answered from memory
    assert (await authenticate(engine, header, CallerKind.SERVICE, cache=cache)).id == caller.id
    clock.now += 0.2  # past it: the database says revoked
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticate(engine, header, CallerKind.SERVICE, cache=cache)
    with pytest.raises(Unauthenticated, match="revoked"):  # and a refusal is never cached
        await authenticate(engine, header, CallerKind.SERVICE, cache=cache)


async def test_forget_revokes_at_once_in_this_process(engine: AsyncEngine) -> None:
    cache = CallerCache(60.0)
    caller, key = await create_caller(
        engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"]
    )
    await authenticate(engine, f"Bearer {key}", CallerKind.SERVICE, cache=cache)
    await revoke_caller(engine, caller.id)
    cache.forget(caller.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticate(engine, f"Bearer {key}", CallerKind.SERVICE, cache=cache)


async def test_cached_key_keeps_its_kind_check(engine: AsyncEngine) -> None:
    """A cached auditor credential is never accepted where a service key is required."""
    cache = CallerCache(60.0)
    _, key = await create_caller(engine, kind=CallerKind.AUDITOR, name="dpo", customers=["acme"])
    await authenticate(engine, f"Bearer {key}", CallerKind.AUDITOR, cache=cache)
    with pytest.raises(Unauthenticated):
        await authenticate(engine, f"Bearer {key}", CallerKind.SERVICE, cache=cache)


def test_cache_is_bounded_and_drops_the_oldest() -> None:
    from datetime import UTC, datetime

    from gateway.callers import Caller
    from policies.vocabulary import CallerClass

    cache = CallerCache(60.0, size=2)
    made = [
        Caller(
            id=f"svc_{i}",
            kind=CallerKind.SERVICE,
            name="n",
            caller_class=CallerClass.INTERNAL,
            customers=frozenset(),
            purposes=frozenset(),
            created_at=datetime.now(UTC),
        )
        for i in range(3)
    ]
    for i, caller in enumerate(made):
        cache.put(f"h{i}", caller)
    assert cache.get("h0") is None
    assert cache.get("h1") is made[1]
    assert cache.get("h2") is made[2]


def _reads_of_callers(engine: AsyncEngine) -> list[str]:
    """Every SELECT on the callers table this engine runs from now on."""
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        statement = args[2]
        if statement.lstrip().upper().startswith("SELECT") and "FROM callers" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def test_concurrent_misses_share_one_read(engine: AsyncEngine) -> None:
    """The entry expires under load: 32 requests in flight, one database read."""
    clock = FakeClock()
    cache = CallerCache(5.0, clock=clock)
    caller, key = await create_caller(
        engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"]
    )
    header = f"Bearer {key}"
    await authenticate(engine, header, CallerKind.SERVICE, cache=cache)
    clock.now += 5.1
    reads = _reads_of_callers(engine)
    seen = await asyncio.gather(
        *(authenticate(engine, header, CallerKind.SERVICE, cache=cache) for _ in range(32))
    )
    assert {found.id for found in seen} == {caller.id}
    assert len(reads) == 1


async def test_concurrent_unknown_keys_are_all_refused_and_never_cached(
    engine: AsyncEngine,
) -> None:
    cache = CallerCache(60.0)
    header = "Bearer lgk_" + "x" * 43
    reads = _reads_of_callers(engine)
    answers = await asyncio.gather(
        *(authenticate(engine, header, CallerKind.SERVICE, cache=cache) for _ in range(8)),
        return_exceptions=True,
    )
    assert all(isinstance(answer, Unauthenticated) for answer in answers)
    assert len(reads) == 1
    with pytest.raises(Unauthenticated, match="unknown"):
        await authenticate(engine, header, CallerKind.SERVICE, cache=cache)
    assert len(reads) == 2  # a refusal is not remembered: a new key works at once


async def test_a_read_that_began_before_a_revocation_is_not_cached(engine: AsyncEngine) -> None:
    cache = CallerCache(60.0)
    caller, key = await create_caller(
        engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"]
    )
    release = asyncio.Event()

    async def old_read() -> Caller:
        await release.wait()
        return caller

    key_hash = hash_key(key)
    before = asyncio.create_task(cache.load(key_hash, old_read))
    await asyncio.sleep(0)
    await revoke_caller(engine, caller.id)
    cache.forget(caller.id)  # revoked through this process while the read was in flight
    release.set()
    assert (await before).id == caller.id  # the request that began earlier
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticate(engine, f"Bearer {key}", CallerKind.SERVICE, cache=cache)
