"""The engine's one-round-trip ping still replaces a connection the server dropped."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.storage import create_engine


@pytest.mark.postgres
async def test_a_dropped_connection_is_replaced_on_checkout(postgres_database: str) -> None:
    engine = create_engine(postgres_database, pool_size=1)
    admin = create_engine(postgres_database)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:  # a server restart, as far as the pool can tell
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        async with engine.connect() as conn:  # no error reaches the caller
            again = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != pid
    finally:
        await engine.dispose()
        await admin.dispose()
