"""Who is calling: service keys and auditor credentials.

Keys are 256 random bits behind a recognisable prefix (``lgk_`` for services,
``lga_`` for auditors) so a leaked key is easy to spot in a log or a
repository scan. Only the SHA-256 of a key is stored; the key itself is shown
once, when it is created.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import Forbidden, NotFound, Unauthenticated
from gateway.single_flight import LoadsInFlight, SingleFlight
from gateway.storage import callers, writer
from policies.vocabulary import CallerClass


class CallerKind(enum.StrEnum):
    SERVICE = "service"
    AUDITOR = "auditor"


KEY_PREFIX = {CallerKind.SERVICE: "lgk_", CallerKind.AUDITOR: "lga_"}
KEY_RANDOM_BYTES = 32
# Characters of a key stored in clear beside its hash (``callers.key_prefix``):
# enough to recognise a key by, far too few to use one.
KEY_PREFIX_LENGTH = 12
# How long an authenticated key is trusted without asking the database again;
# this is also the longest a revoked key keeps working on another replica.
CALLER_CACHE_TTL = 5.0
CALLER_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    kind: CallerKind
    name: str
    caller_class: CallerClass
    customers: frozenset[str]
    purposes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None

    def require_customer(self, customer_id: str) -> None:
        """403 unless this caller is entitled to ``customer_id``."""
        if customer_id not in self.customers:
            raise Forbidden(
                f"this credential is not entitled to customer {customer_id!r}",
                refused_customer=customer_id,
            )

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "name": self.name,
            "class": self.caller_class.value,
            "customers": sorted(self.customers),
            "purposes": sorted(self.purposes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(kind: CallerKind) -> str:
    return KEY_PREFIX[kind] + secrets.token_urlsafe(KEY_RANDOM_BYTES)


async def create_caller(
    engine: AsyncEngine,
    *,
    kind: CallerKind,
    name: str,
    customers: Iterable[str],
    purposes: Iterable[str] = (),
    caller_class: CallerClass = CallerClass.INTERNAL,
) -> tuple[Caller, str]:
    """Store a new credential; returns it with its key, which is never retrievable again."""
    key = new_key(kind)
    caller = Caller(
        id=f"{kind.value[:3]}_{uuid.uuid4().hex[:20]}",
        kind=kind,
        name=name,
        caller_class=caller_class,
        customers=frozenset(customers),
        purposes=frozenset(purposes),
        created_at=datetime.now(UTC),
    )
    async with writer(engine).begin() as conn:
        await conn.execute(
            callers.insert().values(
                id=caller.id,
                kind=kind.value,
                name=name,
                caller_class=caller_class.value,
                key_prefix=key[:KEY_PREFIX_LENGTH],
                key_hash=hash_key(key),
                customers=sorted(caller.customers),
                purposes=sorted(caller.purposes),
                created_at=caller.created_at,
            )
        )
    return caller, key


async def list_callers(engine: AsyncEngine, kind: CallerKind | None = None) -> list[Caller]:
    query = select(callers).order_by(callers.c.created_at)
    if kind is not None:
        query = query.where(callers.c.kind == kind.value)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_from_row(row) for row in rows]


async def revoke_caller(engine: AsyncEngine, caller_id: str) -> None:
    async with writer(engine).begin() as conn:
        result = await conn.execute(
            update(callers)
            .where(callers.c.id == caller_id, callers.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    if result.rowcount == 0:
        raise NotFound(f"no active credential {caller_id!r}")


class CallerCache:
    """Recently authenticated keys, so the records hot path skips a database read.

    Measured: the lookup was one of four pool checkouts per records request (on
    PostgreSQL a pre-ping, BEGIN, the query and ROLLBACK: several round trips).
    Only active callers are kept, keyed by the key's SHA-256 (never the key),
    for ``ttl`` seconds: a key revoked elsewhere (the CLI, another replica)
    stops working within ``ttl`` everywhere. Unknown or revoked keys are not
    cached, so a new key works at once and garbage keys cannot fill the cache.
    Concurrent misses on one key share one database read (:meth:`load`).
    """

    def __init__(
        self,
        ttl: float = CALLER_CACHE_TTL,
        *,
        size: int = CALLER_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        loads: LoadsInFlight | None = None,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Caller]] = OrderedDict()
        self._loads: SingleFlight[str, Caller] = SingleFlight(loads)
        # Bumped by forget(): a read that began before a revocation must not put
        # the caller back after the revocation dropped it.
        self.generation = 0

    def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key_hash]
            return None
        return entry[1]

    def put(self, key_hash: str, caller: Caller, *, read_at: int | None = None) -> None:
        """Keep ``caller``; ``read_at`` is :attr:`generation` when its read began."""
        if self._ttl <= 0 or (read_at is not None and read_at != self.generation):
            return
        self._entries[key_hash] = (self._clock() + self._ttl, caller)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, caller_id: str) -> None:
        """Drop ``caller_id`` now (a revocation made through this process)."""
        self.generation += 1
        self._loads.forget_all()  # keyed by key hash: any load may be this caller's
        for key_hash in [h for h, (_, c) in self._entries.items() if c.id == caller_id]:
            del self._entries[key_hash]

    async def load(self, key_hash: str, read: Callable[[], Coroutine[Any, Any, Caller]]) -> Caller:
        """``read()`` the caller and keep it; concurrent misses on ``key_hash`` share one read."""

        read_at = self.generation  # now, not when the task starts: never after the read began

        async def read_and_keep() -> Caller:
            caller = await read()
            self.put(key_hash, caller, read_at=read_at)
            return caller

        return await self._loads.run(key_hash, read_and_keep)


async def authenticate(
    engine: AsyncEngine,
    authorization: str | None,
    kind: CallerKind,
    *,
    cache: CallerCache | None = None,
) -> Caller:
    """Resolve an ``Authorization: Bearer`` header (RFC 6750 §2.1) to an active caller.

    With ``cache``, an active caller seen in the last ``cache`` TTL seconds is
    answered from memory (see :class:`CallerCache` for what that means for revocation).
    """
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("send Authorization: Bearer <key>")
    if not key.startswith(KEY_PREFIX[kind]):
        raise Unauthenticated(f"this endpoint needs a {kind.value} credential")
    key_hash = hash_key(key)
    if cache is None:
        return await _read_caller(engine, key_hash, kind)
    cached = cache.get(key_hash)
    if cached is not None and cached.kind is kind:
        return cached
    return await cache.load(key_hash, partial(_read_caller, engine, key_hash, kind))


async def callers_by_key_hash(engine: AsyncEngine, key_hashes: Iterable[str]) -> dict[str, Caller]:
    """The callers (revoked ones too) whose keys hash to ``key_hashes``; unknown ones are absent."""
    wanted = sorted(set(key_hashes))
    if not wanted:
        return {}
    async with engine.connect() as conn:
        rows = (
            (await conn.execute(select(callers).where(callers.c.key_hash.in_(wanted))))
            .mappings()
            .all()
        )
    return {row["key_hash"]: _from_row(row) for row in rows}


async def _read_caller(engine: AsyncEngine, key_hash: str, kind: CallerKind) -> Caller:
    """The active caller of ``key_hash`` from the database (401 when unknown or revoked)."""
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(callers).where(callers.c.key_hash == key_hash)))
            .mappings()
            .first()
        )
    if row is None or row["kind"] != kind.value:
        raise Unauthenticated("unknown key")
    if row["revoked_at"] is not None:
        raise Unauthenticated("this key was revoked")
    return _from_row(row)


def _from_row(row: object) -> Caller:
    data = dict(row)  # type: ignore[call-overload]
    return Caller(
        id=data["id"],
        kind=CallerKind(data["kind"]),
        name=data["name"],
        caller_class=CallerClass(data["caller_class"]),
        customers=frozenset(data["customers"]),
        purposes=frozenset(data["purposes"]),
        created_at=data["created_at"],
        revoked_at=data["revoked_at"],
    )
