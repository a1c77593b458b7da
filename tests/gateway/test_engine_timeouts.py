"""The gateway's engine bounds every statement; the migrations' engine does not.

A request must not hang on a database that stopped answering, so each
statement of the gateway's engine fails past ``timeout`` (a 503 upstream of
here). A migration is the opposite case: 0012 copies the whole audit log in
statements that take about a minute per million events, and with the same
bound ``linkgate migrate`` failed with a bare TimeoutError on any log of
real size. ``bound_statements=False`` is what ``migrations/env.py`` asks for.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.storage import create_engine

pytestmark = pytest.mark.postgres

_SLOWER_THAN_THE_BOUND = text("SELECT pg_sleep(1.0)")


async def test_a_statement_past_the_timeout_fails_on_the_gateways_engine(
    postgres_database: str,
) -> None:
    engine = create_engine(postgres_database, timeout=0.3)
    try:
        async with engine.connect() as conn:
            with pytest.raises(TimeoutError):
                await conn.execute(_SLOWER_THAN_THE_BOUND)
    finally:
        await engine.dispose()


async def test_a_statement_past_the_timeout_runs_to_its_end_for_migrations(
    postgres_database: str,
) -> None:
    engine = create_engine(postgres_database, timeout=0.3, bound_statements=False)
    try:
        async with engine.connect() as conn:
            await conn.execute(_SLOWER_THAN_THE_BOUND)
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
