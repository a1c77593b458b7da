"""A refresh whose audit event cannot be appended: the token and the event stand, once.

The rotated token must be committed as soon as the provider answers (a rotated
refresh token is single use), so its ``connection.refreshed`` event is
committed with it, in the audit outbox, and appended after. Here the audit
chain is broken at that moment (its table renamed away, as an unwritable
database looks to the gateway), then mended; a new runtime on the same
database (this process restarted, or another replica starting) drains the
event into the chain exactly once, at the time the refresh committed.

The live gateway's periodic drain is set to an hour: on a slow machine its
default round (every 30 s, entries older than 30 s) could take the entry
before the test reads it, and the row the test looks at would be gone.
"""

from __future__ import annotations

from datetime import UTC

import httpx
import pytest
from sqlalchemy import func, select

from gateway.audit import AuditStore
from gateway.audit.outbox import decode_draft
from gateway.errors import PROBLEM_BASE
from gateway.runtime import open_runtime
from gateway.storage import audit_tables, create_engine
from tests.conftest import Servers, rename_table
from tests.gateway.conftest import CUSTOMER, Stack, build_stack
from tests.records.test_records_api import _linked, _read, _sandbox_stats


@pytest.fixture
async def stack(database_url: str, servers: Servers) -> Stack:
    """The live stack, its gateway draining the outbox only at startup within a test's time."""
    return await build_stack(
        database_url, servers, auto_approve=True, audit_outbox_drain_interval=3600.0
    )


async def _refreshes(stack: Stack) -> int:
    return (await _sandbox_stats(stack))["token_requests"].get("refresh_token", 0)


async def test_a_refresh_event_the_chain_could_not_take_is_drained_once(stack: Stack) -> None:
    connection_id = await _linked(stack)
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    await rename_table(stack.settings.database_url, "audit_events", "audit_events_gone")

    broken = await _read(stack, connection_id, "posts")
    # The read itself fails closed (its own records.read event cannot be written) ...
    assert broken.status_code == 503
    assert broken.json()["type"] == PROBLEM_BASE + "audit-unavailable"
    assert await _refreshes(stack) == 1
    await rename_table(stack.settings.database_url, "audit_events_gone", "audit_events")

    engine = create_engine(stack.settings.database_url)
    try:
        outbox = audit_tables.outbox
        async with engine.connect() as conn:
            [row] = (await conn.execute(select(outbox))).mappings().all()
        # ... but the refresh committed, and its event with it.
        draft = decode_draft(row["draft"])
        assert (str(draft.action), draft.connection_id) == ("connection.refreshed", connection_id)

        again = await _read(stack, connection_id, "posts")
        assert again.status_code == 200, again.text
        assert await _refreshes(stack) == 1  # the committed token serves; no second refresh

        for _ in range(2):  # a restart drains it; a second one finds nothing to append
            async with open_runtime(stack.settings):
                pass
        async with engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
        store = AuditStore(engine, audit_tables)
        events = [e async for e in store.events(CUSTOMER)]
        refreshes = [e for e in events if str(e.action) == "connection.refreshed"]
        assert left == 0
        assert len(refreshes) == 1
        assert refreshes[0].connection_id == connection_id
        # Placed after the read appended meanwhile: at the time the refresh committed
        # its event, or that read's time if later (time never runs backwards in a chain).
        before = events[events.index(refreshes[0]) - 1]
        written_at = row["written_at"]
        if written_at.tzinfo is None:  # SQLite keeps UTC without its offset
            written_at = written_at.replace(tzinfo=UTC)
        assert refreshes[0].occurred_at == max(written_at, before.occurred_at)
        assert (await store.verify(CUSTOMER)).ok
    finally:
        await engine.dispose()
