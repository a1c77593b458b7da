"""Server-side console sessions: a random id in a cookie, its hash in the database.

OWASP ASVS 3.2 and 3.3: the id is 256 random bits (``secrets``), regenerated
at every sign-in (no fixation), stored only as a hash, and ends on sign-out,
after an idle period and after an absolute lifetime. The auditor's key is
checked once at sign-in and never kept; each request re-reads the auditor's
credential row, so a revoked credential ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.callers import Caller, CallerKind
from gateway.storage import callers, writer
from gateway.web.console.tables import ConsoleTables
from policies.vocabulary import CallerClass

__all__ = [
    "ABSOLUTE_LIFETIME",
    "COOKIE",
    "IDLE_TIMEOUT",
    "ConsoleSession",
    "ConsoleSessionStore",
    "hash_session_id",
]

COOKIE = "linkgate_console"
IDLE_TIMEOUT = timedelta(hours=8)
ABSOLUTE_LIFETIME = timedelta(hours=12)
# Writing last_seen_at on every page view would make each read a write;
# once a minute is precise enough for an 8-hour idle timeout.
_TOUCH_EVERY = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in auditor; ``key`` is the stored hash (the CSRF binding), never the cookie."""

    key: str
    caller: Caller
    created_at: datetime
    expires_at: datetime


class ConsoleSessionStore:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: ConsoleTables,
        *,
        idle: timedelta = IDLE_TIMEOUT,
        lifetime: timedelta = ABSOLUTE_LIFETIME,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._t = tables.sessions
        self._idle = idle
        self._lifetime = lifetime
        self._clock = clock

    async def create(self, caller: Caller) -> tuple[str, datetime]:
        """A new session for ``caller``: the cookie value (shown only here) and its expiry."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self._idle
        async with self._writer.begin() as conn:
            # Sign-in is rare: a good moment to forget sessions that ended.
            await conn.execute(delete(self._t).where(self._t.c.expires_at <= now))
            await conn.execute(
                self._t.insert().values(
                    id_hash=hash_session_id(session_id),
                    caller_id=caller.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
        return session_id, expires

    async def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session behind a cookie value, or None (unknown, expired, revoked)."""
        if not session_id or len(session_id) > 128:
            return None
        key = hash_session_id(session_id)
        s, c = self._t, callers
        now = self._clock()
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(s, c.c.kind, c.c.name, c.c.caller_class, c.c.customers)
                    .add_columns(c.c.purposes, c.c.revoked_at, c.c.created_at.label("c_created"))
                    .join(c, c.c.id == s.c.caller_id)
                    .where(s.c.id_hash == key, s.c.expires_at > now)
                )
            ).first()
        if row is None or row.revoked_at is not None or row.kind != CallerKind.AUDITOR.value:
            return None
        caller = Caller(
            id=row.caller_id,
            kind=CallerKind.AUDITOR,
            name=row.name,
            caller_class=CallerClass(row.caller_class),
            customers=frozenset(row.customers),
            purposes=frozenset(row.purposes),
            created_at=row.c_created,
        )
        expires = row.expires_at
        if now - row.last_seen_at >= _TOUCH_EVERY:
            expires = min(now + self._idle, row.created_at + self._lifetime)
            async with self._writer.begin() as conn:
                await conn.execute(
                    update(s).where(s.c.id_hash == key).values(last_seen_at=now, expires_at=expires)
                )
        return ConsoleSession(key=key, caller=caller, created_at=row.created_at, expires_at=expires)

    async def end(self, key: str) -> None:
        """Sign out: the session's row is deleted (by its stored hash)."""
        async with self._writer.begin() as conn:
            await conn.execute(delete(self._t).where(self._t.c.id_hash == key))
