"""Disconnecting: revocation at the provider (RFC 7009), tokens deleted, audited."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from gateway.storage import audit_tables, connections, create_engine
from gateway.vault import KeyRing, token_row
from tests.gateway.conftest import CUSTOMER, Stack


async def test_disconnect_revokes_at_the_provider_and_forgets_the_tokens(stack: Stack) -> None:
    """After DELETE the provider no longer accepts the token and the row holds none."""
    await stack.link()
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
        access = KeyRing.parse(stack.settings.vault_keys).open(
            row["access_token"], row=token_row(row["id"], "access_token")
        )
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
