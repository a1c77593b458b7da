"""Disconnecting: revocation at the provider (RFC 7009), tokens deleted, audited.

The status change and its ``connection.deleted`` event commit together through
the audit outbox; a crash between revocation and that commit is in
tests/processor_requests/test_runner_crash.py.
"""

from __future__ import annotations

import httpx
from sqlalchemy import RowMapping, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.outbox import decode_draft
from gateway.runtime import open_runtime
from gateway.storage import audit_tables, connections, create_engine
from gateway.vault import KeyRing, token_row
from tests.gateway.conftest import CUSTOMER, Stack


async def _the_linked_connection(engine: AsyncEngine, stack: Stack) -> tuple[RowMapping, str]:
    """The one connection's row, and its access token as the vault opens it."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(connections))).mappings().one()
    access = KeyRing.parse(stack.settings.vault_keys).open(
        row["access_token"], row=token_row(row["id"], "access_token")
    )
    return row, access


async def test_disconnect_revokes_at_the_provider_and_forgets_the_tokens(stack: Stack) -> None:
    """After DELETE the provider no longer accepts the token and the row holds none."""
    await stack.link()
    engine = create_engine(stack.settings.database_url)
    try:
        row, access = await _the_linked_connection(engine, stack)
        async with stack.api() as api:
            response = await api.delete(f"/v1/connections/{row['id']}")
        async with engine.connect() as conn:
            after = (await conn.execute(select(connections))).mappings().one()
            actions = (
                (
                    await conn.execute(
                        select(audit_tables.events.c.action).where(
                            audit_tables.events.c.customer_id == CUSTOMER
                        )
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at_provider"] is True
    assert after["access_token"] is None
    assert after["refresh_token"] is None
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        me = await sandbox.get("/api/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401
    assert list(actions) == ["connection.created", "connection.deleted"]


async def test_a_disconnect_while_the_audit_log_is_down_takes_effect_and_is_recorded_once(
    stack: Stack,
) -> None:
    """Audit log down: the disconnect still happens (200, token dead at the provider, none
    held), its event waits in the outbox, and once the log is back the next start appends
    it, once; the chain verifies."""
    await stack.link()
    engine = create_engine(stack.settings.database_url)
    try:
        row, access = await _the_linked_connection(engine, stack)
        async with engine.begin() as conn:  # every audit append fails from now on
            await conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
        async with stack.api() as api:
            response = await api.delete(f"/v1/connections/{row['id']}")
        async with engine.connect() as conn:
            after = (await conn.execute(select(connections))).mappings().one()
            waiting = (await conn.execute(select(audit_tables.outbox.c.draft))).scalars().all()
        async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
            me = await sandbox.get("/api/me", headers={"Authorization": f"Bearer {access}"})

        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit_events_gone RENAME TO audit_events"))
        async with open_runtime(stack.settings) as restarted:  # its start drains the outbox
            verified = await restarted.audit_store.verify(CUSTOMER)
        async with engine.connect() as conn:
            actions = (await conn.execute(select(audit_tables.events.c.action))).scalars().all()
    finally:
        await engine.dispose()

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    assert (after["access_token"], after["refresh_token"]) == (None, None)
    assert me.status_code == 401
    assert [decode_draft(d).action for d in waiting] == ["connection.deleted"]
    assert list(actions).count("connection.deleted") == 1
    assert verified.ok
