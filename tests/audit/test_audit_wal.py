"""SQLite's WAL is checkpointed by a thread of its own, never by an audit append's commit.

WAL frames are counted from the WAL file's size (a 32-byte header, then a
24-byte header and one page per frame: https://sqlite.org/fileformat.html#the_write_ahead_log).
In WAL mode only a checkpoint writes the database file itself, so the main
file growing shows that a checkpoint ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog.testing
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditStore, EventDraft, VerifyResult
from gateway.storage import audit_tables, create_engine, metadata, writer
from gateway.storage.wal import WalCheckpointer

MakeDraft = Callable[..., EventDraft]
REPO = Path(__file__).resolve().parents[2]
AUTOCHECKPOINT_PAGES = 1000  # SQLite's default wal_autocheckpoint


def wal_frames(database: Path) -> int:
    """How many frames the WAL file holds room for (its high-water mark)."""
    page_size = sqlite3.connect(database).execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{database}-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, size - 32) // (page_size + 24)


def file_size(path: Path | str) -> int:
    return Path(path).stat().st_size


def wait_until_written(database: Path, size_before: int) -> None:
    """Wait for the database file to change size: a hang guard of a minute, not a
    measurement (the checkpointer's pace is not what the caller checks)."""
    deadline = time.monotonic() + 60
    while file_size(database) == size_before and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "linkgate.db"


@pytest.fixture
async def gateway_engine(database: Path) -> AsyncIterator[AsyncEngine]:
    """An engine as the gateway's runtime makes it: no checkpoint on commit."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}", checkpoint_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def gateway_store(gateway_engine: AsyncEngine) -> AuditStore:
    return AuditStore(writer(gateway_engine), audit_tables, read_engine=gateway_engine)


async def append_through_the_writer(store: AuditStore, make_draft: MakeDraft, n: int) -> None:
    """``n`` appends of a few events each, on the held writer thread (as the writer does)."""
    async with store.holding_connection():
        for i in range(n):
            await store.append([make_draft(f"customer-{i % 7}", who=(f"u{i}",)) for _ in range(3)])


async def test_audit_appends_never_checkpoint(
    gateway_store: AuditStore, database: Path, make_draft: MakeDraft
) -> None:
    """With the gateway's settings, the audit writer's commits leave the WAL to grow
    past SQLite's auto-checkpoint size and never write the database file."""
    main_before = file_size(database)
    await append_through_the_writer(gateway_store, make_draft, 400)
    assert wal_frames(database) > 2 * AUTOCHECKPOINT_PAGES
    assert file_size(database) == main_before


async def test_engine_writes_never_checkpoint(gateway_engine: AsyncEngine, database: Path) -> None:
    """Every connection the engine opens has auto-checkpoints off, not only the audit thread's."""
    main_before = file_size(database)
    now = datetime.now(UTC)
    for batch in range(300):
        async with writer(gateway_engine).begin() as conn:
            await conn.execute(
                insert(audit_tables.outbox),
                [
                    {
                        "id": f"{batch}-{n}",
                        "customer_id": "acme",
                        "written_at": now,
                        "draft": "x" * 600,
                    }
                    for n in range(20)
                ],
            )
    assert wal_frames(database) > 2 * AUTOCHECKPOINT_PAGES
    assert file_size(database) == main_before


async def test_passive_passes_keep_the_wal_small_under_sustained_appends(
    gateway_store: AuditStore, database: Path, make_draft: MakeDraft
) -> None:
    """A pass after every few appends copies the WAL back, so writers start it over:
    it stays far below what the same appends grow it to without passes."""
    checkpointer = WalCheckpointer(str(database))
    try:
        async with gateway_store.holding_connection():
            for i in range(400):
                await gateway_store.append([make_draft(f"c{i % 7}") for _ in range(3)])
                if i % 10 == 9:
                    checkpointer.run_once()
    finally:
        checkpointer.stop()
    assert wal_frames(database) < AUTOCHECKPOINT_PAGES // 2
    assert (await gateway_store.verify("c0")).ok


async def test_a_wal_past_the_bound_is_truncated(
    gateway_store: AuditStore, database: Path, make_draft: MakeDraft
) -> None:
    """Past ``max_wal_pages`` a pass empties the WAL file, and every event is still there."""
    await append_through_the_writer(gateway_store, make_draft, 100)
    before = wal_frames(database)
    checkpointer = WalCheckpointer(str(database), max_wal_pages=before // 2)
    try:
        result = checkpointer.run_once()
    finally:
        checkpointer.stop()
    assert (True, before) == (result.truncated, result.wal_pages)
    assert file_size(f"{database}-wal") == 0
    results = [await gateway_store.verify(f"customer-{c}") for c in range(7)]
    assert (all(r.ok for r in results), sum(r.events_checked for r in results)) == (True, 300)


async def test_the_checkpointer_thread_copies_the_wal_back(
    gateway_store: AuditStore, database: Path, make_draft: MakeDraft
) -> None:
    """Running (as ``linkgate serve`` runs it), the thread checkpoints on its own."""
    main_before = file_size(database)
    async with WalCheckpointer(str(database), interval=0.01):
        await append_through_the_writer(gateway_store, make_draft, 50)
        # Only a checkpoint writes the database file.
        await asyncio.to_thread(wait_until_written, database, main_before)
    assert file_size(database) > main_before


async def verify_acme(database: Path) -> VerifyResult:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        return await AuditStore(engine, audit_tables).verify("acme")
    finally:
        await engine.dispose()


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from gateway.audit import Action, AuditStore, EventDraft, Outcome
    from gateway.storage import audit_tables, create_engine, metadata, writer
    from gateway.storage.wal import WalCheckpointer

    async def main(path):
        engine = create_engine(f"sqlite+aiosqlite:///{path}", checkpoint_on_commit=False)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        draft = EventDraft(
            customer_id="acme", action=Action.RECORDS_READ, outcome=Outcome.ALLOWED,
            caller_id="svc", caller_class="internal", connection_id="conn-1",
            provider="facebook", resource="page_messages", purpose="support",
            record_count=1, categories=("user.content",), dropped={}, subjects=(),
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        )
        # Passes as often as they can and a small bound: checkpoints (passive
        # and truncating) run while the writer commits, when the process dies.
        async with WalCheckpointer(path, interval=0.001, max_wal_pages=50):
            async with store.holding_connection():
                while True:
                    (event,) = await store.append([draft])
                    print(event.seq, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_nothing_committed_is_lost_when_the_process_dies(database: Path) -> None:
    """A process killed mid-append, mid-checkpoint, keeps every event it saw committed."""
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(database)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    committed = 0
    try:
        for line in process.stdout:
            if not line.strip().isdigit():
                continue  # a log line (the checkpointer's), not a committed count
            committed = int(line)
            if committed >= 1500:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
    assert committed >= 1500, stderr
    result = asyncio.run(verify_acme(database))
    assert result.ok, result.problem
    assert result.head_seq >= committed


async def test_a_reader_that_outlasts_the_truncation_is_not_retried_at_every_pass(
    gateway_store: AuditStore, database: Path, make_draft: MakeDraft
) -> None:
    """While a long read pins the WAL, truncating attempts (each holds writers off)
    back off; once the read ends, the next attempt empties the WAL."""
    now = [0.0]
    checkpointer = WalCheckpointer(
        str(database), max_wal_pages=10, busy_timeout=0.01, clock=lambda: now[0]
    )
    await append_through_the_writer(gateway_store, make_draft, 5)
    reader = sqlite3.connect(database, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM audit_events").fetchone()  # a snapshot, held
        await append_through_the_writer(gateway_store, make_draft, 20)
        with structlog.testing.capture_logs() as logs:
            pinned = [checkpointer.run_once().truncated]
            pinned.append(checkpointer.run_once().truncated)  # at once: not attempted
            now[0] += 1.0
            pinned.append(checkpointer.run_once().truncated)  # a second later: attempted
        attempts = [entry["event"] for entry in logs]
    finally:
        reader.close()
    now[0] += 2.0
    try:
        after = checkpointer.run_once()
    finally:
        checkpointer.stop()
    assert (pinned, attempts) == ([False, False, False], ["wal.truncate_busy"] * 2)
    assert (after.truncated, file_size(f"{database}-wal")) == (True, 0)
