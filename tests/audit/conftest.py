"""Fixtures for the audit tests: drafts, a signer, and real SQLite and PostgreSQL databases.

PostgreSQL comes from ``LINKGATE_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); a throwaway database
``linkgate_audit_<random>`` is created once per session through a plain asyncpg
connection to the URL's database and dropped at the end. Without a server the
PostgreSQL cases are skipped, except under CI (``CI`` set), where they fail.

The database fixtures are general enough for the rest of the gateway's tests
to lift into ``tests/conftest.py`` later.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.audit import (
    Action,
    AuditStore,
    AuditTables,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    Outcome,
    SubjectHasher,
    define_audit_tables,
)

POSTGRES_URL_ENV = "LINKGATE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SUBJECT_SECRET = b"s" * 32


def _asyncpg_params(url: URL) -> dict[str, Any]:
    return {
        "host": url.host,
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


async def _admin(url: URL, statement: str) -> None:
    conn = await asyncpg.connect(**_asyncpg_params(url), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL database for this session."""
    base = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    name = f"linkgate_audit_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {base.render_as_string()} is unreachable: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield base.set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(autouse=True)
async def _aiosqlite_threads_finish() -> AsyncIterator[None]:
    """Let aiosqlite worker threads end while the test's event loop still runs.

    After a failed connect aiosqlite stops its worker thread without awaiting
    it; if the loop closes first, the thread's callback raises "Event loop is
    closed" into a later test (omnilib/aiosqlite#241).
    """
    yield
    for _ in range(200):
        if not any(
            t.name.endswith("(_connection_worker_thread)") and t.is_alive()
            for t in threading.enumerate()
        ):
            return
        await asyncio.sleep(0.01)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """An engine configured as the gateway runs it (SQLite in WAL mode)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=5, max_overflow=20)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a temporary SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def new_engine() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    """A factory for extra engines (another replica, a broken URL); all disposed after the test."""
    made: list[AsyncEngine] = []

    def new(url: str) -> AsyncEngine:
        made.append(make_engine(url))
        return made[-1]

    yield new
    for engine in made:
        await engine.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[AuditTables]:
    """The audit tables, created fresh for the test and dropped after it."""
    metadata = MetaData()
    tables = define_audit_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    yield tables
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(Ed25519PrivateKey.generate(), name="test.linkgate/audit")


@pytest.fixture
def keys(signer: CheckpointSigner) -> CheckpointKeys:
    return CheckpointKeys.parse([signer.verifier_key])


@pytest.fixture
def store(engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys) -> AuditStore:
    return AuditStore(engine, tables, keys=keys)


@pytest.fixture
def hasher() -> SubjectHasher:
    return SubjectHasher(SUBJECT_SECRET)


@pytest.fixture
def make_draft(hasher: SubjectHasher) -> Callable[..., EventDraft]:
    """Build a records.read draft; keyword arguments override fields, ``who`` adds subjects."""

    def make(customer_id: str = "acme", *, who: tuple[str, ...] = (), **fields: Any) -> EventDraft:
        values: dict[str, Any] = {
            "customer_id": customer_id,
            "action": Action.RECORDS_READ,
            "outcome": Outcome.ALLOWED,
            "caller_id": "svc-crm",
            "caller_class": "internal",
            "connection_id": "conn-1",
            "provider": "facebook",
            "resource": "page_messages",
            "purpose": "support",
            "record_count": 3,
            "categories": ("user.contact.email", "user.content"),
            "dropped": {"public-or-direct": 1},
            "subjects": tuple(hasher.hash(customer_id, w) for w in who),
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "trace_summary": {
                "spans": [{"name": "fetch", "duration_us": 1200, "status": "ok"}],
                "upstream_statuses": [200],
                "retries": 0,
                "refreshed": False,
            },
        }
        values.update(fields)
        return EventDraft(**values)

    return make
