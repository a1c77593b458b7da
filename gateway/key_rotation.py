"""``linkgate keys rotate``: re-seal every stored token under the current vault key.

That is each connection's access and refresh token, every scoped token
(Meta Page tokens) of ``gateway.provider_tokens`` and the identity claims kept
by ``gateway.account_claims`` (Apple).

Runs beside live traffic: each connection is re-sealed in its own short
transaction, and only if its ciphertext is unchanged since it was read (a
concurrent refresh wins and already used the current key). Old ciphertext
keeps opening until the old key is removed from ``LINKGATE_VAULT_KEYS``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.account_claims import CLAIMS_ROW
from gateway.config import Settings
from gateway.provider_tokens import scoped_token_name
from gateway.storage import connections, create_engine, writer
from gateway.storage.schema import account_claims, provider_tokens
from gateway.vault import KeyRing, token_row

TOKEN_COLUMNS = ("access_token", "refresh_token")


async def rotate_vault(settings: Settings, *, progress: Callable[[int, int], None]) -> int:
    vault = KeyRing.parse(settings.vault_keys)
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            own = (
                await conn.execute(
                    select(
                        connections.c.id, connections.c.access_token, connections.c.refresh_token
                    )
                )
            ).all()
            scoped = (
                await conn.execute(
                    select(
                        provider_tokens.c.connection_id,
                        provider_tokens.c.object_id,
                        provider_tokens.c.token,
                    )
                )
            ).all()
            claims = (
                await conn.execute(select(account_claims.c.connection_id, account_claims.c.claims))
            ).all()
        stale_own = [
            row
            for row in own
            if any(sealed and vault.needs_rotation(sealed) for sealed in (row[1], row[2]))
        ]
        stale_scoped = [row for row in scoped if vault.needs_rotation(row[2])]
        stale_claims = [row for row in claims if vault.needs_rotation(row[1])]
        total = len(stale_own) + len(stale_scoped) + len(stale_claims)
        progress(0, total)
        done = 0
        for connection_id, *sealed in stale_own:
            await _reseal_connection(engine, vault, connection_id, sealed)
            done += 1
            progress(done, total)
        for connection_id, object_id, ciphertext in stale_scoped:
            await _reseal_scoped(engine, vault, connection_id, object_id, ciphertext)
            done += 1
            progress(done, total)
        for connection_id, ciphertext in stale_claims:
            await _reseal_claims(engine, vault, connection_id, ciphertext)
            done += 1
            progress(done, total)
        print(
            f"rotated {len(stale_own)} connection(s) and {len(stale_scoped)} scoped token(s)"
            f" to key {vault.current_kid!r}"
        )
        return 0
    finally:
        await engine.dispose()


async def _reseal_connection(
    engine: AsyncEngine, vault: KeyRing, connection_id: str, sealed: list[str | None]
) -> None:
    values: dict[str, str] = {}
    guards = []
    for column, ciphertext in zip(TOKEN_COLUMNS, sealed, strict=True):
        if ciphertext and vault.needs_rotation(ciphertext):
            row = token_row(connection_id, column)
            values[column] = vault.seal(vault.open(ciphertext, row=row), row=row)
            guards.append(connections.c[column] == ciphertext)
    async with writer(engine).begin() as conn:
        await conn.execute(
            update(connections).where(connections.c.id == connection_id, *guards).values(values)
        )


async def _reseal_scoped(
    engine: AsyncEngine, vault: KeyRing, connection_id: str, object_id: str, ciphertext: str
) -> None:
    """Page tokens and the like (gateway.provider_tokens) are sealed the same way."""
    row = token_row(connection_id, scoped_token_name(object_id))
    async with writer(engine).begin() as conn:
        await conn.execute(
            update(provider_tokens)
            .where(
                provider_tokens.c.connection_id == connection_id,
                provider_tokens.c.object_id == object_id,
                provider_tokens.c.token == ciphertext,
            )
            .values(token=vault.seal(vault.open(ciphertext, row=row), row=row))
        )


async def _reseal_claims(
    engine: AsyncEngine, vault: KeyRing, connection_id: str, ciphertext: str
) -> None:
    """Kept identity claims (gateway.account_claims) are sealed the same way."""
    row = token_row(connection_id, CLAIMS_ROW)
    async with writer(engine).begin() as conn:
        await conn.execute(
            update(account_claims)
            .where(
                account_claims.c.connection_id == connection_id,
                account_claims.c.claims == ciphertext,
            )
            .values(claims=vault.seal(vault.open(ciphertext, row=row), row=row))
        )
