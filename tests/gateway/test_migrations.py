"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL.

Tests and ``linkgate migrate`` create databases only through Alembic; the
tables the code queries are declared in gateway/storage/schema.py (and the
tables modules it gathers). If the two drift — a column, index or constraint
added to one and not the other — production databases and the code disagree,
so any difference Alembic's own comparison finds fails here.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.audit import is_partition_name
from gateway.storage import create_engine
from gateway.storage.schema import metadata


def _declared(name: str | None, type_: str, _parent: Any) -> bool:
    """The audit tables' month and DEFAULT partitions are rows' homes, not declared tables:
    PostgreSQL lists them as tables of their own."""
    return not (type_ == "table" and name is not None and is_partition_name(name))


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": _declared}
    )
    return list(compare_metadata(context, metadata))


async def test_the_migrated_schema_is_the_declared_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
