"""A SQLite connection on a thread of its own: a whole write transaction in one hop.

aiosqlite runs every call on a connection (cursor, execute, fetch, close,
commit) on the connection's thread and wakes the event loop with the result;
through SQLAlchemy a statement is about four such hops. An audit append was
nine statements, so about forty thread and loop wake-ups, and at concurrency
1 those, not SQLite, were most of its wall time: 5.8 ms from ``BEGIN`` to
``COMMIT`` for one event, where the same statements on a plain connection
take a fraction of a millisecond. :class:`SQLiteThread` runs a function of a
plain :mod:`sqlite3` connection on the connection's one thread instead, so a
transaction with nothing to await between its statements costs one hop.

The connection is set up like the engine's own (it reads their settings
from one of them), so a lock wait is bounded by the same busy timeout and a
commit is as durable: WAL with ``synchronous`` as the engine sets it
(https://sqlite.org/wal.html, https://sqlite.org/pragma.html#pragma_synchronous),
and checkpoints from a commit only if the engine's connections do
(``wal_autocheckpoint``, see :mod:`gateway.storage.wal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SQLiteThread"]

T = TypeVar("T")

# The settings a connection gets from the engine's connect hooks and keeps to
# itself (journal_mode=WAL is kept in the database file, but a copy costs nothing).
# wal_autocheckpoint: whether a commit here may checkpoint (off where a
# gateway.storage.wal.WalCheckpointer does it on a thread of its own).
_COPIED = ("journal_mode", "synchronous", "foreign_keys", "wal_autocheckpoint")


class SQLiteThread:
    """One plain sqlite3 connection, used only from the one thread that opened it."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection = connection

    @classmethod
    async def open(cls, engine: AsyncEngine) -> SQLiteThread:
        """Connect to ``engine``'s database file, set up as the engine's connections are."""
        database = engine.url.database
        if not database or database == ":memory:" or engine.url.query.get("uri"):
            # An in-memory database is private to the connection that made it.
            raise ValueError("SQLiteThread needs the path of a SQLite database file")
        async with engine.connect() as conn:
            busy_timeout_ms = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
            settings = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in _COPIED
            }
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linkgate-sqlite")

        def connect() -> sqlite3.Connection:
            # isolation_level=None: transactions begin where the caller says (write()).
            connection = sqlite3.connect(
                database, timeout=busy_timeout_ms / 1000, isolation_level=None
            )
            try:
                for name, value in settings.items():
                    connection.execute(f"PRAGMA {name}={value}")
            except BaseException:
                connection.close()
                raise
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in a ``BEGIN IMMEDIATE`` transaction on the thread; commit, or roll back.

        IMMEDIATE takes the write lock first, so a read-then-write never fails
        with ``SQLITE_BUSY`` on the lock upgrade (as the engine's writers begin).
        Returns once committed. ``body`` runs with the GIL like any Python
        code and must not touch the event loop.
        """

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = body(connection)
                connection.execute("COMMIT")
            except BaseException:
                # The original error says more than a failed rollback; the
                # caller drops the connection either way.
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                raise
            return result

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, transaction, self._connection)

    async def close(self) -> None:
        """Close the connection on its thread, then let the thread end."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connection.close)
        finally:
            self._executor.shutdown(wait=False)
