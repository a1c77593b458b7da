"""A step's completion and its audit event commit together: a resumed request records each
step's event exactly once, whatever failed between the step and its completion mark.

On SQLite the completion's table is made unwritable the moment a step starts (a
fault between the step and its mark); on PostgreSQL ``linkgate requests run`` is
killed (SIGKILL) while its completion waits on a lock. Either way a later runner
resumes the request: each step's ``processor_request.step`` event is in the
chain once, and the chain verifies. With the audit log down an erasure still
runs, its step events committed with the steps and appended once by the drain.

A portability bundle's files are saved by the transaction that records
``fetch_and_bundle`` done: cut off at the same two points, the request holds no
files; the resumed run saves the bundle its manifest describes.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from gateway.config import Settings
from gateway.processor_requests.jobs import services
from gateway.processor_requests.machine import Kind, Status
from gateway.processor_requests.runner import Runner
from gateway.processor_requests.store import Filing, ProcessorRequest
from gateway.runtime import Runtime, open_runtime
from tests.conftest import POSTGRES_URL, _admin, _asyncpg_dsn, make_settings
from tests.processor_requests.test_purge_audit import _audit_verify, _env
from tests.processor_requests.test_runner import (
    CUSTOMER,
    ERASURE_EVENTS,
    SUBJECT,
    _later,
    _step_events,
)

WAIT = 60.0  # seconds before a test gives up waiting for a moment that should come
STEPS = "processor_request_steps"
PORTABILITY_EVENTS = ["completed", "fetch_and_bundle", "received", "verified"]


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    from gateway.storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    upgrade(url)
    return make_settings(url)


@pytest.fixture
def postgres_settings(postgres_database: str) -> Settings:
    from gateway.storage.migrate import upgrade

    upgrade(postgres_database)
    return make_settings(postgres_database)


@pytest.fixture
async def sqlite_runtime(sqlite_settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(sqlite_settings) as built:
        yield built


async def _file_erasure(runtime: Runtime) -> ProcessorRequest:
    return await _file(runtime, Kind.ERASURE)


async def _file(runtime: Runtime, kind: Kind) -> ProcessorRequest:
    return await services(runtime).store.file(
        Filing(customer_id=CUSTOMER, kind=kind, identifiers=SUBJECT, verified_by="dpo"),
        actor_id="svc_test",
        actor_class="internal",
    )


async def _resume_and_expect_the_bundle_once(runtime: Runtime, filed: ProcessorRequest) -> None:
    """The resumed run completes; the files stored are the ones its manifest names,
    and ``fetch_and_bundle``'s event is in the chain once."""
    resumed = await Runner(_later(runtime, minutes=10)).run_next()
    assert resumed is not None
    assert resumed.status is Status.COMPLETED
    assert resumed.result is not None
    named = [(f["name"], f["sha256"]) for f in resumed.result["manifest"]["files"]]
    stored = [(f.name, f.sha256) for f in await services(runtime).store.files(filed.id)]
    assert sorted(named) == stored
    assert len(stored) == 2
    assert await _step_events(runtime, filed.id) == PORTABILITY_EVENTS


async def _resume_and_expect_every_event_once(runtime: Runtime, filed: ProcessorRequest) -> None:
    """A run resumed after its lease lapsed completes; each step's event is in the chain once."""
    resumed = await Runner(_later(runtime, minutes=10)).run_next()
    assert resumed is not None
    assert resumed.status is Status.COMPLETED
    assert await _step_events(runtime, filed.id) == ERASURE_EVENTS
    assert (await runtime.suppressions.counts(CUSTOMER))["erasure"] == 1


async def test_a_step_whose_completion_failed_is_recorded_once_when_resumed(
    sqlite_runtime: Runtime, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """The first step runs but its completion cannot be written: its event is not in the
    chain either; the resumed request records every step's event once."""
    runtime = sqlite_runtime
    filed = await _file_erasure(runtime)
    path = str(make_url(sqlite_settings.database_url).database)
    broken: list[str] = []

    def break_the_steps_table(_request: ProcessorRequest, step: str, _i: int, _n: int) -> None:
        if not broken:  # once: as the first step starts, its completion's table goes away
            with sqlite3.connect(path) as db:
                db.execute(f"ALTER TABLE {STEPS} RENAME TO {STEPS}_gone")
            broken.append(step)

    first = await Runner(services(runtime), progress=break_the_steps_table).run_next()
    assert first is not None
    assert first.status is Status.RUNNING
    assert broken == ["suppress"]
    assert await _step_events(runtime, filed.id) == ["received", "verified"]
    with sqlite3.connect(path) as db:
        db.execute(f"ALTER TABLE {STEPS}_gone RENAME TO {STEPS}")

    await _resume_and_expect_every_event_once(runtime, filed)
    verified = _audit_verify(sqlite_settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.postgres
async def test_a_runner_killed_while_recording_a_step_records_it_once_when_resumed(
    postgres_settings: Settings, tmp_path: Path
) -> None:
    """``linkgate requests run`` killed while the first step's completion waits on a lock:
    a later runner resumes, and each step's event is in the chain once."""
    settings = postgres_settings
    async with open_runtime(settings) as runtime:
        filed = await _file_erasure(runtime)

    await _kill_while_a_step_waits_on_its_completion(settings, filed, tmp_path)

    async with open_runtime(settings) as runtime:
        await _resume_and_expect_every_event_once(runtime, filed)
    verified = _audit_verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_bundle_whose_completion_failed_leaves_no_files(
    sqlite_runtime: Runtime, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """``fetch_and_bundle`` builds its bundle but its completion cannot be written: the
    request holds no files; the resumed run stores the bundle its manifest names."""
    runtime = sqlite_runtime
    filed = await _file(runtime, Kind.PORTABILITY)
    path = str(make_url(sqlite_settings.database_url).database)

    def break_the_steps_table(_request: ProcessorRequest, _step: str, _i: int, _n: int) -> None:
        with sqlite3.connect(path) as db:
            db.execute(f"ALTER TABLE {STEPS} RENAME TO {STEPS}_gone")

    first = await Runner(services(runtime), progress=break_the_steps_table).run_next()
    assert first is not None
    assert first.status is Status.RUNNING
    assert await services(runtime).store.files(filed.id) == []
    assert await _step_events(runtime, filed.id) == ["received", "verified"]
    with sqlite3.connect(path) as db:
        db.execute(f"ALTER TABLE {STEPS}_gone RENAME TO {STEPS}")

    await _resume_and_expect_the_bundle_once(runtime, filed)
    verified = _audit_verify(sqlite_settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.postgres
async def test_a_runner_killed_while_recording_a_bundle_leaves_no_files(
    postgres_settings: Settings, tmp_path: Path
) -> None:
    """``linkgate requests run`` killed while ``fetch_and_bundle``'s completion waits on a
    lock: the request holds no files; a later runner stores the bundle once."""
    settings = postgres_settings
    async with open_runtime(settings) as runtime:
        filed = await _file(runtime, Kind.PORTABILITY)

    await _kill_while_a_step_waits_on_its_completion(settings, filed, tmp_path)

    async with open_runtime(settings) as runtime:
        assert await services(runtime).store.files(filed.id) == []
        await _resume_and_expect_the_bundle_once(runtime, filed)
    verified = _audit_verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def _kill_while_a_step_waits_on_its_completion(
    settings: Settings, filed: ProcessorRequest, tmp_path: Path
) -> None:
    """Run ``filed`` in ``linkgate requests run`` and SIGKILL it while its first step's
    completion waits for the steps table, which this test holds locked."""
    database = str(make_url(settings.database_url).database)
    # PostgreSQL ends a dead client's statement while it waits on a lock (PostgreSQL 14+).
    await _admin(f'ALTER DATABASE "{database}" SET client_connection_check_interval = 50')
    holder = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL, database))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(f"LOCK TABLE {STEPS} IN EXCLUSIVE MODE")  # reads pass, writes wait
        killed = _start_run(settings, filed.id, tmp_path)
        try:
            await asyncio.wait_for(_until_waiting_on(holder, STEPS), WAIT)
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=WAIT)
        await transaction.rollback()
    finally:
        await holder.close()


def _start_run(settings: Settings, request_id: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``linkgate requests run ID`` in its own process, to be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "requests", "run", request_id],
        cwd=tmp_path,
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_waiting_on(conn: asyncpg.Connection, table: str) -> None:
    """Return once another session waits for a lock on ``table``."""
    while True:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = $1 AND NOT l.granted",
            table,
        )
        if waiting:
            return
        await asyncio.sleep(0.02)


async def test_an_erasure_run_while_the_audit_log_is_down_is_audited_once_by_the_drain(
    database_url: str,
) -> None:
    """Erasure protects the End User, so it proceeds with the audit log down: each step's
    event is committed with the step and appended once when the log is back."""
    async with open_runtime(make_settings(database_url)) as runtime:
        await runtime.audit.stop()  # every append fails from here on
        filed = await _file_erasure(runtime)

        [finished] = await Runner(services(runtime)).run_all()

        assert finished.status is Status.COMPLETED
        assert (await runtime.suppressions.counts(CUSTOMER))["erasure"] == 1
        assert await _step_events(runtime, filed.id) == []
        await runtime.audit_outbox.drain()
        assert await runtime.audit_outbox.drain() == 0
        assert await _step_events(runtime, filed.id) == ERASURE_EVENTS
        assert (await runtime.audit_store.verify(CUSTOMER)).ok
