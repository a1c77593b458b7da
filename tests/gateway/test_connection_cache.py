"""The records path's connection cache: no row read per request, changes still honoured.

In this process a revoke, a refresh or a status change shows at once; made
through another replica (or the CLI) it shows within ``CONNECTION_CACHE_TTL``;
no token is served from memory past its expiry.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.connections import (
    CONNECTION_CACHE_TTL,
    Connection,
    ConnectionCache,
    ConnectionStore,
    Status,
)
from gateway.errors import NotFound
from gateway.oauth import TokenSet
from gateway.refresh import TokenRefresher
from gateway.storage import connections, create_engine, writer
from gateway.vault import KeyRing, generate_key_entry
from providers.base import Account

CUSTOMERS = frozenset({"acme"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


VAULT = KeyRing.parse(generate_key_entry("c1"))


def tokens(expires_in: int = 86400) -> TokenSet:
    return TokenSet(
        access_token=secrets.token_urlsafe(16),
        token_type="Bearer",
        expires_at=int((datetime.now(UTC) + timedelta(seconds=expires_in)).timestamp()),
        refresh_token=secrets.token_urlsafe(16),
    )


async def linked(store: ConnectionStore, expires_in: int = 86400) -> Connection:
    connection, _ = await store.link(
        customer_id="acme",
        provider="sandbox",
        account=Account(subject=f"usr_{secrets.token_hex(4)}", name="Ada", issuer="https://x"),
        tokens=tokens(expires_in),
        scopes=("posts",),
    )
    return connection


def test_the_window_is_a_few_seconds() -> None:
    assert 0 < CONNECTION_CACHE_TTL <= 5


async def test_a_cached_read_needs_no_database(engine: AsyncEngine) -> None:
    store = ConnectionStore(engine, VAULT)
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    store._engine = None  # type: ignore[assignment]  # any database read now fails
    hit = await store.get(connection.id, customers=CUSTOMERS, cached=True)
    assert hit.id == connection.id


async def test_another_customer_is_refused_from_the_cache_too(engine: AsyncEngine) -> None:
    store = ConnectionStore(engine, VAULT)
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    with pytest.raises(NotFound) as refused:
        await store.get(connection.id, customers=frozenset({"globex"}), cached=True)
    assert refused.value.refused_customer == "acme"


async def test_revoke_through_this_process_shows_at_once(engine: AsyncEngine) -> None:
    store = ConnectionStore(engine, VAULT)
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    await store.mark_revoked(connection.id, "customer disconnected")
    seen = await store.get(connection.id, customers=CUSTOMERS, cached=True)
    assert seen.status is Status.REVOKED
    assert seen.sealed_access_token is None


async def test_relink_through_this_process_shows_at_once(engine: AsyncEngine) -> None:
    store = ConnectionStore(engine, VAULT)
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    relinked, _ = await store.link(
        customer_id="acme",
        provider="sandbox",
        account=Account(subject=connection.subject, name="Ada", issuer="https://x"),
        tokens=tokens(),
        scopes=("posts",),
    )
    seen = await store.get(connection.id, customers=CUSTOMERS, cached=True)
    assert seen.sealed_access_token == relinked.sealed_access_token


async def test_status_change_on_another_replica_shows_within_the_ttl(engine: AsyncEngine) -> None:
    """Two replicas: their own caches, one database. B suspends; A notices within the TTL."""
    clock = FakeClock()
    one = ConnectionStore(engine, VAULT, cache=ConnectionCache(clock=clock))
    two = ConnectionStore(engine, VAULT)
    connection = await linked(one)
    assert (await one.get(connection.id, customers=CUSTOMERS, cached=True)).status is Status.ACTIVE

    await two.mark_revoked(connection.id, "revoked on the other replica")
    clock.now += CONNECTION_CACHE_TTL - 0.1
    stale = await one.get(connection.id, customers=CUSTOMERS, cached=True)
    assert stale.status is Status.ACTIVE  # the documented window
    clock.now += 0.2
    fresh = await one.get(connection.id, customers=CUSTOMERS, cached=True)
    assert fresh.status is Status.REVOKED


async def test_suppression_written_outside_the_store_shows_within_the_ttl(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    store = ConnectionStore(engine, VAULT, cache=ConnectionCache(clock=clock))
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    async with writer(engine).begin() as conn:
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection.id)
            .values(status=Status.SUPPRESSED.value)
        )
    clock.now += CONNECTION_CACHE_TTL + 0.01
    seen = await store.get(connection.id, customers=CUSTOMERS, cached=True)
    assert seen.status is Status.SUPPRESSED


async def test_no_entry_outlives_its_token(engine: AsyncEngine) -> None:
    """A token expiring in 1 s is cached for at most 1 s, whatever the TTL."""
    now = datetime.now(UTC)
    cache = ConnectionCache(ttl=60.0, clock=FakeClock(), now=lambda: now)
    store = ConnectionStore(engine, VAULT, cache=cache)
    connection = await linked(store)
    expiring = replace(connection, token_expires_at=now + timedelta(seconds=1))
    cache.put(expiring)
    assert cache.get(connection.id) is not None
    cache._clock.now += 1.01  # type: ignore[attr-defined]
    assert cache.get(connection.id) is None
    cache.put(replace(connection, token_expires_at=now - timedelta(seconds=1)))
    assert cache.get(connection.id) is None  # already expired: never cached


async def test_a_read_that_began_before_a_change_is_not_cached(engine: AsyncEngine) -> None:
    cache = ConnectionCache(clock=FakeClock())
    connection = await linked(ConnectionStore(engine, VAULT))
    read_at = cache.generation
    cache.forget(connection.id)  # revoked while the read was in flight
    cache.put(connection, read_at=read_at)
    assert cache.get(connection.id) is None


def test_entries_are_bounded() -> None:
    cache = ConnectionCache(size=2, clock=FakeClock())
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "customer_id": "acme",
        "provider": "sandbox",
        "issuer": "https://x",
        "subject": "s",
        "account_name": "n",
        "scopes": (),
        "status": Status.ACTIVE,
        "status_reason": None,
        "token_expires_at": None,
        "created_at": now,
        "updated_at": now,
        "last_refreshed_at": None,
        "linked_at": now,
    }
    for name in ("a", "b", "c"):
        cache.put(Connection(id=name, **base))
    assert cache.get("a") is None
    assert cache.get("c") is not None


class _Refresher(TokenRefresher):
    """The refresher's cache bookkeeping, without a provider: the row step is scripted."""

    def __init__(self, cache: ConnectionCache, outcome: Connection | Exception) -> None:
        self._cache = cache
        self._outcome = outcome

    async def _refresh_row(self, connection_id: str, seen: str | None, forced: bool) -> Connection:
        await asyncio.sleep(0)
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


async def test_a_refresh_replaces_the_cached_connection(engine: AsyncEngine) -> None:
    cache = ConnectionCache(clock=FakeClock())
    connection = await linked(ConnectionStore(engine, VAULT, cache=cache))
    cache.put(connection)
    refreshed = replace(connection, sealed_access_token="new")
    await _Refresher(cache, refreshed)._refresh(connection.id, "old", forced=True)
    assert cache.get(connection.id) == refreshed


async def test_a_failed_refresh_drops_the_cached_connection(engine: AsyncEngine) -> None:
    """needs_reauth, cooling off, revoked meanwhile: the next request reads the row."""
    cache = ConnectionCache(clock=FakeClock())
    connection = await linked(ConnectionStore(engine, VAULT, cache=cache))
    cache.put(connection)
    with pytest.raises(RuntimeError):
        await _Refresher(cache, RuntimeError("invalid_grant"))._refresh(
            connection.id, "old", forced=True
        )
    assert cache.get(connection.id) is None


def _reads_of(engine: AsyncEngine, table: str) -> list[str]:
    """Every SELECT on ``table`` this engine runs from now on (appended as it runs)."""
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        statement = args[2]
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def test_concurrent_misses_share_one_read(engine: AsyncEngine) -> None:
    """An expired entry under load: 32 requests in flight, one row read (not 32 checkouts)."""
    clock = FakeClock()
    store = ConnectionStore(engine, VAULT, cache=ConnectionCache(clock=clock))
    connection = await linked(store)
    await store.get(connection.id, customers=CUSTOMERS, cached=True)
    clock.now += CONNECTION_CACHE_TTL + 0.01
    reads = _reads_of(engine, "connections")
    seen = await asyncio.gather(
        *(store.get(connection.id, customers=CUSTOMERS, cached=True) for _ in range(32))
    )
    assert {found.id for found in seen} == {connection.id}
    assert len(reads) == 1
    with pytest.raises(NotFound):  # and the one read still answers each caller for itself
        await asyncio.gather(
            store.get(connection.id, customers=CUSTOMERS, cached=True),
            store.get(connection.id, customers=frozenset({"globex"}), cached=True),
        )


async def test_uncached_reads_are_never_shared(engine: AsyncEngine) -> None:
    """Paths that ask for the row as it is now (cached=False) each read it themselves."""
    store = ConnectionStore(engine, VAULT)
    connection = await linked(store)
    reads = _reads_of(engine, "connections")
    await asyncio.gather(*(store.get(connection.id, customers=CUSTOMERS) for _ in range(3)))
    assert len(reads) == 3


async def test_a_miss_after_a_change_does_not_join_a_read_begun_before_it(
    engine: AsyncEngine,
) -> None:
    cache = ConnectionCache(clock=FakeClock())
    connection = await linked(ConnectionStore(engine, VAULT))
    revoked = replace(connection, status=Status.REVOKED, sealed_access_token=None)
    release = asyncio.Event()

    async def old_read() -> Connection | None:
        await release.wait()
        return connection

    async def new_read() -> Connection | None:
        return revoked

    before = asyncio.create_task(cache.load(connection.id, old_read))
    await asyncio.sleep(0)  # the old read is in flight
    cache.forget(connection.id)  # this process revoked the connection meanwhile
    after = await cache.load(connection.id, new_read)
    release.set()
    assert after.status is Status.REVOKED  # type: ignore[union-attr]
    assert (await before) == connection  # the request that began earlier sees what it read
    assert cache.get(connection.id) == revoked  # the older row never replaces the newer


async def test_a_waiter_that_goes_away_does_not_cancel_the_shared_read(
    engine: AsyncEngine,
) -> None:
    cache = ConnectionCache(clock=FakeClock())
    connection = await linked(ConnectionStore(engine, VAULT))
    release = asyncio.Event()

    async def read() -> Connection | None:
        await release.wait()
        return connection

    first = asyncio.create_task(cache.load(connection.id, read))
    second = asyncio.create_task(cache.load(connection.id, read))
    await asyncio.sleep(0)
    first.cancel()  # its client disconnected
    release.set()
    assert await second == connection
    assert cache.get(connection.id) == connection
