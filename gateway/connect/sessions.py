"""Connect sessions: short-lived, single-customer links into the connect portal.

An internal service creates one for a customer; the admin's browser holds its
token in the URL. Only the token's hash is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import InvalidParameter, NotFound
from gateway.storage import connect_sessions, writer

TOKEN_PREFIX = "lgcs_"  # noqa: S105 - a prefix that makes leaked tokens recognisable


@dataclass(frozen=True, slots=True)
class ConnectSession:
    id: str
    customer_id: str
    providers: tuple[str, ...]
    return_url: str | None
    created_by: str
    expires_at: datetime


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def allowed_return_url(url: str, allowlist: Sequence[str]) -> bool:
    """Exact origin-and-path-prefix match against the operator's allow-list (RFC 9700 §4.11)."""
    if _moves_when_resolved(url):
        return False
    for allowed in allowlist:
        base = allowed.rstrip("/")
        if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
            return True
    return False


def _moves_when_resolved(url: str) -> bool:
    """Whether a browser would resolve ``url``'s path outside the prefix its text shows.

    WHATWG URL parsing (which browsers follow for the redirect) drops tabs and
    newlines, reads a backslash as a slash in http(s) URLs, and resolves ``.``
    and ``..`` segments, ``%2e`` spelled either case as a dot (RFC 3986 §5.2.4).
    """
    if "\\" in url or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        return True
    path = url.split("?", 1)[0].split("#", 1)[0]
    return any(segment in (".", "..") for segment in unquote(path).split("/"))


class ConnectSessionStore:
    def __init__(
        self, engine: AsyncEngine, *, ttl_seconds: int, return_url_allowlist: Sequence[str]
    ):
        self._engine = engine
        self._ttl = timedelta(seconds=ttl_seconds)
        self._allowlist = tuple(return_url_allowlist)

    async def create(
        self,
        *,
        customer_id: str,
        providers: Sequence[str],
        return_url: str | None,
        created_by: str,
    ) -> tuple[ConnectSession, str]:
        if return_url and not allowed_return_url(return_url, self._allowlist):
            raise InvalidParameter(
                "return_url is not on the allow-list (LINKGATE_RETURN_URL_ALLOWLIST)",
                parameter="return_url",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = ConnectSession(
            id=f"cs_{uuid.uuid4().hex[:24]}",
            customer_id=customer_id,
            providers=tuple(providers),
            return_url=return_url,
            created_by=created_by,
            expires_at=now + self._ttl,
        )
        async with writer(self._engine).begin() as conn:
            await conn.execute(
                connect_sessions.insert().values(
                    id=session.id,
                    token_hash=digest(token),
                    customer_id=customer_id,
                    providers=list(session.providers),
                    return_url=return_url,
                    created_by=created_by,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session, token

    async def by_token(self, token: str) -> ConnectSession:
        """The live session behind a portal link; expired and unknown look the same."""
        query = select(connect_sessions).where(connect_sessions.c.token_hash == digest(token))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None or row["expires_at"] <= datetime.now(UTC):
            raise NotFound("this connect link is unknown or has expired; ask for a new one")
        return self._from_row(row)

    async def by_id(self, session_id: str) -> ConnectSession:
        query = select(connect_sessions).where(connect_sessions.c.id == session_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound("connect session not found")
        return self._from_row(row)

    @staticmethod
    def _from_row(row: object) -> ConnectSession:
        data = dict(row)  # type: ignore[call-overload]
        return ConnectSession(
            id=data["id"],
            customer_id=data["customer_id"],
            providers=tuple(data["providers"]),
            return_url=data["return_url"],
            created_by=data["created_by"],
            expires_at=data["expires_at"],
        )
