"""Checkpointing SQLite's write-ahead log on a thread of its own, off every commit.

By default SQLite checkpoints from inside a commit: the commit that takes the
WAL past ``wal_autocheckpoint`` pages (1000) copies the WAL back into the
database file and syncs both before it returns
(https://sqlite.org/wal.html#automatic_checkpoint). Under ``synchronous=NORMAL``
the only other commit that syncs is the first into a WAL started over (its
header, https://sqlite.org/pragma.html#pragma_synchronous), so about one audit
append in sixty paid those three fsyncs and a thousand page copies:
linkgate-sqlite's p99. The header sync stays (it is part of that
durability); the checkpoint leaves. An engine made with
``create_engine(..., checkpoint_on_commit=False)`` turns that off on every
connection it opens (the audit writer's own connection copies the setting),
and :class:`WalCheckpointer` checkpoints instead, on a connection and thread
of its own:

* every ``interval`` seconds, a PASSIVE checkpoint: it copies what it can
  without taking any lock a reader or writer waits on
  (https://sqlite.org/c3ref/wal_checkpoint_v2.html), and costs nothing when no
  commit came since the last one (nothing left to copy). Once everything is
  copied, the next writer starts the WAL over from its beginning, so under
  steady load it holds about ``interval`` seconds of writes;
* the hard bound: when a pass finds more than ``max_wal_pages`` frames in the
  WAL (readers kept the passive checkpoints from finishing, so the WAL never
  started over), a TRUNCATE checkpoint. That one holds new writers off and
  waits for readers, each for at most ``busy_timeout``, and leaves the WAL file
  empty. If a reader outlasts it (a long verification or export pins the
  WAL until it ends, and nothing can checkpoint past it), the next attempt
  waits 1 s, then 2, 4 … up to a minute, so writers are not held off over
  and over while that read lasts.

Durability is unchanged: ``synchronous`` stays what the engine sets, and a
commit is as durable once it is in the WAL as before; a checkpoint only moves
committed pages into the database file (https://sqlite.org/wal.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_WAL_PAGES",
    "MAX_TRUNCATE_BACKOFF",
    "MIN_TRUNCATE_BACKOFF",
    "CheckpointPass",
    "WalCheckpointer",
    "sqlite_file",
]

DEFAULT_INTERVAL = 0.2  # seconds between passive checkpoints
DEFAULT_MAX_WAL_PAGES = 10_000  # about 40 MiB at SQLite's default 4 KiB page
DEFAULT_BUSY_TIMEOUT = 0.2  # seconds a truncating checkpoint holds writers off, at most
MIN_TRUNCATE_BACKOFF = 1.0  # seconds before trying again after a truncation gave up
MAX_TRUNCATE_BACKOFF = 60.0

log = structlog.get_logger("gateway.storage.wal")


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The path of ``engine``'s SQLite database file, or ``None`` (another database,
    or an in-memory one, which has no WAL to checkpoint)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if engine.url.query.get("uri"):
        return None
    return database


@dataclass(frozen=True, slots=True)
class CheckpointPass:
    """What one pass found and did (the counts ``PRAGMA wal_checkpoint`` answers)."""

    wal_pages: int  # frames in the WAL when the pass ran (-1: not in WAL mode)
    checkpointed: int  # of those, copied into the database file
    truncated: bool  # whether the pass emptied the WAL file


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL from a thread of its own.

    ``async with checkpointer:`` runs the thread; :meth:`run_once` is one pass.
    """

    def __init__(
        self,
        database: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_wal_pages: int = DEFAULT_MAX_WAL_PAGES,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._interval = interval
        self._max_wal_pages = max_wal_pages
        self._busy_timeout = busy_timeout
        self._clock = clock
        # Seconds until the next truncating attempt after one gave up (doubling).
        self._backoff = MIN_TRUNCATE_BACKOFF / 2
        self._next_truncate = 0.0
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one pass at a time, on one connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> CheckpointPass:
        """A passive checkpoint, and a truncating one when the WAL is past the bound
        (unless one gave up on a reader recently: then it waits a while first)."""
        with self._lock:
            connection = self._connect()
            _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames <= self._max_wal_pages or self._clock() < self._next_truncate:
                return CheckpointPass(frames, copied, truncated=False)
            busy, _, truncated_copied = connection.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).fetchone()
            if busy:
                # A long read (a verification, an export) pins the WAL: every
                # attempt would hold writers off for the busy timeout again.
                self._backoff = min(2 * self._backoff, MAX_TRUNCATE_BACKOFF)
                self._next_truncate = self._clock() + self._backoff
                log.warning("wal.truncate_busy", wal_pages=frames, retry_in=self._backoff)
                return CheckpointPass(frames, copied, truncated=False)
            self._backoff = MIN_TRUNCATE_BACKOFF / 2
            return CheckpointPass(frames, max(copied, truncated_copied), truncated=True)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # check_same_thread=False: tests call run_once from their own thread;
            # self._lock keeps it to one caller at a time.
            self._connection = sqlite3.connect(
                self._database,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        return self._connection

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
            except sqlite3.Error as exc:
                # The writers go on either way (the WAL only grows until a pass
                # succeeds); the next pass opens a fresh connection.
                log.warning("wal.checkpoint_failed", error=type(exc).__name__)
                self._close()

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="linkgate-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current pass, and close its connection."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join()
        self._close()

    async def __aenter__(self) -> WalCheckpointer:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Off the event loop: the current pass may be a truncating checkpoint.
        await asyncio.to_thread(self.stop)
