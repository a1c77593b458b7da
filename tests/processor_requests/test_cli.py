"""`linkgate requests …` and `linkgate purge` against a real database."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from gateway.cli import main
from gateway.storage import create_engine
from gateway.storage.schema import connect_sessions
from gateway.vault import generate_key_entry
from tests.conftest import undo_logging


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: object) -> Iterator[str]:
    """Settings in the environment; the logging the commands configure is undone after."""
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.delenv("LINKGATE_CONFIG", raising=False)
    monkeypatch.setenv("LINKGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", generate_key_entry("k1"))
    monkeypatch.setenv("LINKGATE_SECRET_KEY", secrets.token_urlsafe(48))
    yield database_url
    undo_logging()


def test_create_verify_run_and_show(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A request filed unverified waits; verified and run, it completes, step by step."""
    main(["requests", "create", "--customer", "acme", "--kind", "objection",
          "--email", "jane@customer.example", "--purpose", "marketing.communications",
          "--json"])  # fmt: skip
    created = json.loads(capsys.readouterr().out)
    main(["requests", "run"])
    waiting = capsys.readouterr().out
    main(["requests", "verify", created["id"], "--by", "dpo@acme.example"])
    capsys.readouterr()
    code = main(["requests", "run"])
    ran = capsys.readouterr()
    main(["requests", "show", created["id"]])
    shown = json.loads(capsys.readouterr().out)

    assert created["status"] == "received"
    assert "nothing to run" in waiting
    assert code == 0
    assert "step 1/1: suppress" in ran.err
    assert shown["status"] == "completed"
    assert "jane@" not in ran.out + ran.err + json.dumps(shown)


def test_purge_reports_what_it_deleted(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On an empty database the purge says nothing is past retention."""
    assert main(["purge"]) == 0
    assert "nothing is past retention" in capsys.readouterr().out


def test_purge_with_the_audit_log_unwritable_deletes_and_says_where_the_events_wait(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chain cannot be written: the purge still deletes, says its events wait in the
    audit outbox, and the next command's start appends them; the chain verifies."""
    asyncio.run(_expired_session(env))
    asyncio.run(_execute(env, "ALTER TABLE audit_events RENAME TO audit_events_gone"))
    code = main(["purge"])
    purged = capsys.readouterr()
    asyncio.run(_execute(env, "ALTER TABLE audit_events_gone RENAME TO audit_events"))
    main(["requests", "list", "--customer", "acme"])  # any command's start drains the outbox
    capsys.readouterr()
    verified = main(["audit", "verify", "--customer", "acme"])

    assert code == 0
    assert "deleted 1 connect sessions" in purged.out
    assert "1 retention.purged event(s) were not appended by this run" in purged.err
    assert "audit outbox" in purged.err
    assert verified == 0
    assert "acme: ok, 1 events" in capsys.readouterr().out


async def _expired_session(database_url: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(connect_sessions).values(
                    id="cs_old",
                    token_hash="0" * 64,
                    customer_id="acme",
                    providers=[],
                    created_by="svc_test",
                    created_at=past - timedelta(minutes=15),
                    expires_at=past,
                )
            )
    finally:
        await engine.dispose()


async def _execute(database_url: str, statement: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()
