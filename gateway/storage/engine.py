"""Creating the database engine: SQLite (WAL) for one process, PostgreSQL for many."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_

DEFAULT_TIMEOUT = 10.0  # seconds; the gateway passes LINKGATE_DB_TIMEOUT instead
WRITE_OPTION = "linkgate_write"


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, marked so that SQLite transactions begin IMMEDIATE."""
    return engine.execution_options(**{WRITE_OPTION: True})


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    timeout: float = DEFAULT_TIMEOUT,
    checkpoint_on_commit: bool = True,
    bound_statements: bool = True,
) -> AsyncEngine:
    """``timeout`` bounds each database step: a statement or lock wait, a checkout, a connect.

    Past it the step raises, the request becomes a 503 ``database-unavailable``
    and its transaction is rolled back, instead of the caller hanging on a slow
    or partitioned database.

    ``bound_statements=False`` (PostgreSQL): statements run as long as they
    take, connecting is still bounded. For migrations, whose statements copy
    or index whole tables (0012 copies the audit log) and would otherwise fail
    past ``timeout`` on any log of real size.

    ``checkpoint_on_commit=False`` (SQLite): no commit on the engine's
    connections checkpoints the WAL (``wal_autocheckpoint=0``); whoever passes
    it runs a :class:`~gateway.storage.wal.WalCheckpointer` instead, or the WAL
    grows until the last connection closes.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            connect_args={"timeout": timeout},  # sqlite3's busy timeout: the lock wait
            pool_timeout=timeout,
            hide_parameters=True,
            # SQLAlchemy's default for file databases is 5 kept + 10 overflow; an
            # overflow connection is closed on check-in, so under load requests
            # kept paying a new aiosqlite thread, connect and PRAGMAs. Sized like
            # the PostgreSQL pool (LINKGATE_DB_POOL_SIZE) instead.
            **(
                {}
                if ":memory:" in url or url.rstrip("/").endswith(":")
                else {"pool_size": pool_size, "max_overflow": pool_size}
            ),
        )
        event.listen(
            engine.sync_engine,
            "connect",
            _sqlite_pragmas(int(timeout * 1000), checkpoint_on_commit=checkpoint_on_commit),
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        # asyncpg: ``timeout`` bounds connecting, ``command_timeout`` every statement
        # (client side, so it also ends a wait on a database that stopped answering).
        connect_args={"timeout": timeout, "command_timeout": timeout if bound_statements else None},
    )
    # Pessimistic disconnect handling with one round trip: the asyncpg dialect's
    # own pool_pre_ping wraps its ";" in BEGIN … ROLLBACK (for PgBouncer's
    # transaction mode, sqlalchemy#10226), three round trips on every checkout,
    # and the records path checks out several connections per request.
    event.listen(engine.sync_engine.pool, "checkout", _postgres_ping)
    return engine


def _postgres_ping(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
    # Raising DisconnectionError makes the pool discard this connection and
    # check out (or open) another, as pool_pre_ping would
    # (https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic).
    try:
        await_(dbapi_connection.driver_connection.execute("SELECT 1"))  # simple query: one trip
    except Exception as exc:  # any failure means: do not hand this connection out
        raise DisconnectionError(f"ping failed: {type(exc).__name__}") from exc


def _sqlite_pragmas(
    busy_timeout_ms: int, *, checkpoint_on_commit: bool
) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # WAL lets readers run beside the single writer; NORMAL is durable in WAL
        # mode across application crashes (https://sqlite.org/wal.html).
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if not checkpoint_on_commit:
            # The commit that takes the WAL past 1000 pages would otherwise copy
            # it back and fsync twice before returning (gateway.storage.wal).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()
        # Let SQLAlchemy, not the driver, decide when transactions begin, so the
        # "begin" hook below can take the write lock up front.
        dbapi_connection.isolation_level = None

    return on_connect


def _sqlite_begin_immediate(conn: Any) -> None:
    # A write transaction takes SQLite's write lock at BEGIN: a read-then-write
    # (token refresh, chain append) can never be overtaken between its read
    # and its write, and never fails with SQLITE_BUSY on lock upgrade.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
