"""Alembic environment: runs migrations over the gateway's async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from gateway.audit import is_partition_name
from gateway.storage.engine import create_engine
from gateway.storage.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
        compare_type=True,
        # The audit tables' partitions are not declared tables (gateway.audit.partitions).
        include_name=lambda name, type_, _parent: (
            not (type_ == "table" and name is not None and is_partition_name(name))
        ),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", bound_statements=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_migrate())
