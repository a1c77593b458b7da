"""The retention purge never deletes without a record of it, whatever fails in between.

Each customer's deletion of each kind and its ``retention.purged`` event commit
in one transaction (the event into the audit outbox), then the event is
appended to the chain. Here the append fails (the audit writer stopped), or
the process is killed (SIGKILL) while the append waits on the customer's
chain head: the deletion stands, its event is in the outbox, and the next
process start appends it exactly once; the chain still verifies
(``linkgate audit verify``). Two purges at once delete and record each row once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url

from gateway.audit import Action, EventDraft, Outcome
from gateway.config import Settings
from gateway.connections import Status
from gateway.oauth import TokenSet
from gateway.processor_requests.purge import purge
from gateway.runtime import Runtime, open_runtime
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade
from gateway.storage.schema import connect_sessions, connections, oauth_states
from providers.base import Account
from tests.conftest import _admin, make_settings
from tests.gateway.conftest import CUSTOMER
from tests.trust.test_refresh_crash import _until_only_backend
from tests.trust.test_slow_database import _audit_head_locked

OTHER = "globex"
WAIT = 60.0  # seconds before a test gives up waiting for a moment that should come
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def migrated_postgres(postgres_database: str) -> str:
    upgrade(postgres_database)
    return postgres_database


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as built:
        yield built


async def _expired_session(runtime: Runtime, customer_id: str, *, with_state: bool) -> None:
    """A connect session (and its OAuth state) that expired an hour ago."""
    past = datetime.now(UTC) - timedelta(hours=1)
    session_id = f"cs_{secrets.token_hex(8)}"
    async with runtime.engine.begin() as conn:
        await conn.execute(
            insert(connect_sessions).values(
                id=session_id,
                token_hash=secrets.token_hex(32),
                customer_id=customer_id,
                providers=[],
                created_by="svc_test",
                created_at=past - timedelta(minutes=15),
                expires_at=past,
            )
        )
        if with_state:
            await conn.execute(
                insert(oauth_states).values(
                    state_hash=secrets.token_hex(32),
                    session_id=session_id,
                    provider="sandbox",
                    code_verifier="sealed-verifier",
                    browser_binding="0" * 64,
                    created_at=past - timedelta(minutes=10),
                    expires_at=past,
                )
            )


async def _left(runtime: Runtime) -> dict[str, int]:
    """Rows still in the sessions, states and audit outbox tables."""
    counts = {}
    async with runtime.engine.connect() as conn:
        for name, table in (
            ("connect_sessions", connect_sessions),
            ("oauth_states", oauth_states),
            ("outbox", audit_tables.outbox),
        ):
            query = select(func.count()).select_from(table)
            counts[name] = int((await conn.execute(query)).scalar_one())
    return counts


async def _purged(runtime: Runtime, customer_id: str) -> list[tuple[str | None, int]]:
    page = await runtime.audit_store.search([customer_id], action=Action.RETENTION_PURGED.value)
    return sorted((e.resource, e.record_count) for e in page.events)


def _audit_verify(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``linkgate audit verify`` as an operator runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify"],
        cwd=tmp_path,
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def _start_purge(settings: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``linkgate purge`` in its own process, to be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "purge"],
        cwd=tmp_path,
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _env(settings: Settings) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    return {
        **inherited,
        "PYTHONPATH": str(REPO),
        "LINKGATE_DATABASE_URL": settings.database_url,
        "LINKGATE_VAULT_KEYS": settings.vault_keys,
        "LINKGATE_SECRET_KEY": settings.secret_key,
    }


async def test_a_purge_whose_audit_append_fails_still_records_each_deletion_once(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    """The audit log refuses the appends: the expired sessions are deleted all the same, their
    events wait in the outbox, and the next start appends each once; the chain verifies."""
    await _expired_session(runtime, CUSTOMER, with_state=True)
    await _expired_session(runtime, OTHER, with_state=False)
    await runtime.audit.stop()  # every append fails from here on

    report = await purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy)

    assert report.totals() == {"connect_sessions": 2, "oauth_states": 1}
    assert report.events_outboxed == 3
    assert await _left(runtime) == {"connect_sessions": 0, "oauth_states": 0, "outbox": 3}
    assert await _purged(runtime, CUSTOMER) == []

    for _ in range(2):  # a restart appends them; a second one finds nothing left
        async with open_runtime(settings) as restarted:
            assert (await _left(restarted))["outbox"] == 0
    assert await _purged(runtime, CUSTOMER) == [("connect_sessions", 1), ("oauth_states", 1)]
    assert await _purged(runtime, OTHER) == [("connect_sessions", 1)]
    verified = _audit_verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def _dead_connection(runtime: Runtime, subject: str) -> None:
    """A linked connection with tokens and kept claims, in needs_reauth for a month."""
    connection, _ = await runtime.connections.link(
        customer_id=CUSTOMER, provider="apple",
        account=Account(subject=subject, name="Ada", issuer="https://appleid.apple.com"),
        tokens=TokenSet(access_token="at", token_type="Bearer", expires_at=None,
                        refresh_token="rt"),
        scopes=("name", "email"),
    )  # fmt: skip
    await runtime.connections.claims.keep(connection.id, {"sub": subject})
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection.id)
            .values(
                status=Status.NEEDS_REAUTH.value,
                updated_at=datetime.now(UTC) - timedelta(days=30),
            )
        )


async def test_two_purges_at_once_delete_and_record_each_row_once(
    runtime: Runtime, settings: Settings
) -> None:
    """Two replicas purging together: every expired session and dead connection's tokens
    and claims are deleted by one of them and recorded by that one alone."""
    for n in range(3):
        await _expired_session(runtime, CUSTOMER, with_state=True)
        await _dead_connection(runtime, f"subject-{n}")
    kinds = ("account_claims", "connect_sessions", "connection_tokens", "oauth_states")
    async with open_runtime(settings) as other_replica:
        reports = await asyncio.gather(
            purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy),
            purge(other_replica.engine, other_replica.audit_outbox, other_replica.policy.policy),
        )
    deleted = {kind: sum(r.totals().get(kind, 0) for r in reports) for kind in kinds}
    assert deleted == dict.fromkeys(kinds, 3)
    page = await runtime.audit_store.search([CUSTOMER], action=Action.RETENTION_PURGED.value)
    recorded = {
        kind: sum(e.record_count for e in page.events if e.resource == kind) for kind in kinds
    }
    assert recorded == dict.fromkeys(kinds, 3)
    assert (await runtime.audit_store.verify(CUSTOMER)).ok


@pytest.mark.postgres
async def test_a_purge_killed_between_its_deletion_and_its_audit_append_keeps_both(
    migrated_postgres: str, tmp_path: Path
) -> None:
    """``linkgate purge`` killed while its append waits on the customer's chain head: the
    session is deleted and its event, committed with the deletion, is appended once by the
    next process's start; the chain verifies."""
    settings = make_settings(migrated_postgres)
    database = str(make_url(migrated_postgres).database)
    # PostgreSQL ends a dead client's statement while it waits on a lock (PostgreSQL 14+).
    await _admin(f'ALTER DATABASE "{database}" SET client_connection_check_interval = 50')
    async with open_runtime(settings) as runtime:
        # The customer's chain has a head row to hold.
        await runtime.audit.record(
            EventDraft(
                customer_id=CUSTOMER,
                action=Action.CONNECTION_CREATED,
                outcome=Outcome.ALLOWED,
                connection_id="con_1",
                provider="sandbox",
            )
        )
        await _expired_session(runtime, CUSTOMER, with_state=False)

    async with _audit_head_locked(migrated_postgres) as holder:
        killed = _start_purge(settings, tmp_path)
        try:
            await asyncio.wait_for(_until_deleted(settings), WAIT)  # committed; append waits
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=WAIT)
        await asyncio.wait_for(_until_only_backend(database, holder), WAIT)

    async with open_runtime(settings) as restarted:
        assert await _left(restarted) == {"connect_sessions": 0, "oauth_states": 0, "outbox": 0}
        assert await _purged(restarted, CUSTOMER) == [("connect_sessions", 1)]
    async with open_runtime(settings) as again:
        assert await _purged(again, CUSTOMER) == [("connect_sessions", 1)]
    verified = _audit_verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def _until_deleted(settings: Settings) -> None:
    """Return once no connect session is left: the purge's deletion committed."""
    engine = create_engine(settings.database_url)
    try:
        while True:
            async with engine.connect() as conn:
                left = (
                    await conn.execute(select(func.count()).select_from(connect_sessions))
                ).scalar_one()
            if left == 0:
                return
            await asyncio.sleep(0.02)
    finally:
        await engine.dispose()
