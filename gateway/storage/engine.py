"""Creating the database engine: SQLite (WAL) for one process, PostgreSQL for many."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "linkgate_write"


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, marked so that SQLite transactions begin IMMEDIATE."""
    return engine.execution_options(**{WRITE_OPTION: True})


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers run beside the single writer; NORMAL is durable in WAL
    # mode across application crashes (https://sqlite.org/wal.html).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    # Let SQLAlchemy, not the driver, decide when transactions begin, so the
    # "begin" hook below can take the write lock up front.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    # A write transaction takes SQLite's write lock at BEGIN: a read-then-write
    # (token refresh, chain append) can never be overtaken between its read
    # and its write, and never fails with SQLITE_BUSY on lock upgrade.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
