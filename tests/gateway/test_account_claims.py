"""Kept identity claims (Apple's profile) on real databases: sealed, and gone with the grant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from gateway.account_claims import CLAIMS_ROW
from gateway.connections import Connection, ConnectionStore, Status
from gateway.key_rotation import rotate_vault
from gateway.oauth import TokenSet
from gateway.processor_requests.purge import purge
from gateway.runtime import Runtime, open_runtime
from gateway.storage import account_claims, connections
from gateway.vault import KeyRing, generate_key_entry, token_row
from providers.base import Account
from tests.conftest import make_settings

CLAIMS = {"sub": "001234.abc.0638", "email": "x7k2mq9z@privaterelay.appleid.com", "name": "Ada"}


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(database_url)) as built:
        yield built


async def _linked(store: ConnectionStore, subject: str = "001234.abc.0638") -> Connection:
    connection, _ = await store.link(
        customer_id="acme", provider="apple",
        account=Account(subject=subject, name="Ada", issuer="https://appleid.apple.com"),
        tokens=TokenSet(access_token="at", token_type="Bearer", expires_at=None,
                        refresh_token="rt"),
        scopes=("name", "email"),
    )  # fmt: skip
    await store.claims.keep(connection.id, {**CLAIMS, "sub": subject})
    return connection


async def _kept(runtime: Runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(account_claims.c.connection_id))).all()
    return sorted(row.connection_id for row in rows)


async def test_claims_are_sealed_to_their_connection(runtime: Runtime) -> None:
    """The row holds ciphertext bound to its connection; the store opens it again."""
    store = runtime.connections
    connection = await _linked(store)

    async with runtime.engine.connect() as conn:
        sealed = (await conn.execute(select(account_claims.c.claims))).scalar_one()

    assert "privaterelay" not in sealed
    assert await store.claims.get(connection.id) == CLAIMS
    assert await store.claims.find(
        customer_id="acme", provider="apple",
        account=Account(subject=CLAIMS["sub"], name="", issuer="https://appleid.apple.com"),
    ) == CLAIMS  # fmt: skip


@pytest.mark.parametrize("status", [Status.REVOKED, Status.SUPPRESSED])
async def test_ending_the_grant_deletes_the_claims(runtime: Runtime, status: Status) -> None:
    """Disconnect (revoked) and consent withdrawal (suppressed) delete claims with the tokens."""
    store = runtime.connections
    ended, other = await _linked(store, "s-1"), await _linked(store, "s-2")

    await store.end_grant(ended.id, status=status, reason="test")

    assert await _kept(runtime) == [other.id]


async def test_erasure_of_the_account_holder_deletes_the_claims(runtime: Runtime) -> None:
    """Deleting the connection (erasure's last step) leaves no claims row behind."""
    store = runtime.connections
    connection = await _linked(store)

    await store.delete(connection.id)

    assert await _kept(runtime) == []


async def test_the_purge_deletes_claims_of_dead_connections_only(runtime: Runtime) -> None:
    """needs_reauth untouched past user.authorization's period: claims purged and audited."""
    store = runtime.connections
    dead, alive = await _linked(store, "s-dead"), await _linked(store, "s-alive")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(connections)
            .where(connections.c.id == dead.id)
            .values(
                status=Status.NEEDS_REAUTH.value,
                updated_at=datetime.now(UTC) - timedelta(days=30),
            )
        )

    report = await purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy)

    assert report.deleted["account_claims"] == {"acme": 1}
    assert await _kept(runtime) == [alive.id]


async def test_key_rotation_reseals_the_claims(database_url: str) -> None:
    """``keys rotate`` re-seals kept claims so they open with the new key alone."""
    old, new = generate_key_entry("k1"), generate_key_entry("k2")
    async with open_runtime(make_settings(database_url, vault_keys=old)) as built:
        connection = await _linked(built.connections)

    settings = replace(make_settings(database_url), vault_keys=f"{new},{old}")
    assert await rotate_vault(settings, progress=lambda done, total: None) == 0

    async with open_runtime(make_settings(database_url, vault_keys=new)) as built:
        async with built.engine.connect() as conn:
            sealed = (await conn.execute(select(account_claims.c.claims))).scalar_one()
        assert KeyRing.parse(new).kid_of(sealed) == "k2"
        assert KeyRing.parse(new).open(sealed, row=token_row(connection.id, CLAIMS_ROW))
        assert await built.connections.claims.get(connection.id) == CLAIMS
