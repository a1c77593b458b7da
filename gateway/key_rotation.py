"""``linkgate keys rotate``: re-seal every stored token under the current vault key.

Runs beside live traffic: each connection is re-sealed in its own short
transaction, and only if its ciphertext is unchanged since it was read (a
concurrent refresh wins and already used the current key). Old ciphertext
keeps opening until the old key is removed from ``LINKGATE_VAULT_KEYS``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update

from gateway.config import Settings
from gateway.storage import connections, create_engine, writer
from gateway.vault import KeyRing, token_row

TOKEN_COLUMNS = ("access_token", "refresh_token")


async def rotate_vault(settings: Settings, *, progress: Callable[[int, int], None]) -> int:
    vault = KeyRing.parse(settings.vault_keys)
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        connections.c.id, connections.c.access_token, connections.c.refresh_token
                    )
                )
            ).all()
        stale = [
            row
            for row in rows
            if any(sealed and vault.needs_rotation(sealed) for sealed in (row[1], row[2]))
        ]
        progress(0, len(stale))
        for done, (connection_id, *sealed) in enumerate(stale, start=1):
            values: dict[str, str] = {}
            guards = []
            for column, ciphertext in zip(TOKEN_COLUMNS, sealed, strict=True):
                if ciphertext and vault.needs_rotation(ciphertext):
                    row = token_row(connection_id, column)
                    values[column] = vault.seal(vault.open(ciphertext, row=row), row=row)
                    guards.append(connections.c[column] == ciphertext)
            async with writer(engine).begin() as conn:
                await conn.execute(
                    update(connections)
                    .where(connections.c.id == connection_id, *guards)
                    .values(values)
                )
            progress(done, len(stale))
        print(f"rotated {len(stale)} connection(s) to key {vault.current_kid!r}")
        return 0
    finally:
        await engine.dispose()
