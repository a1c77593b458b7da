"""On SQLite the running gateway's commits never checkpoint the WAL; a thread of its own does."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.audit import Action, EventDraft, Outcome
from gateway.runtime import open_runtime
from gateway.storage.migrate import upgrade
from tests.conftest import make_settings

CHECKPOINT_THREAD = "linkgate-wal-checkpoint"


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == CHECKPOINT_THREAD]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file."""
    url = f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    upgrade(url)
    return url


async def test_the_runtime_checkpoints_on_its_own_thread_and_never_on_commit(
    sqlite_url: str,
) -> None:
    """The engine's connections (whose settings the audit writer's own connection
    copies, tests/audit/test_audit_wal.py) have auto-checkpoints off while the
    checkpointer thread runs; the thread stops with the runtime."""
    async with open_runtime(make_settings(sqlite_url)) as runtime:
        await runtime.audit.record(
            EventDraft(
                customer_id="acme", action=Action.CONNECTION_CREATED, outcome=Outcome.ALLOWED
            )
        )
        async with runtime.engine.connect() as conn:
            engine_setting = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
        running = len(checkpoint_threads())
    assert (engine_setting, running) == (0, 1)
    assert checkpoint_threads() == []
