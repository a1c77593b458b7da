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
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import Forbidden, NotFound, Unauthenticated
from gateway.storage import callers, writer
from policies.vocabulary import CallerClass


class CallerKind(enum.StrEnum):
    SERVICE = "service"
    AUDITOR = "auditor"


KEY_PREFIX = {CallerKind.SERVICE: "lgk_", CallerKind.AUDITOR: "lga_"}
KEY_RANDOM_BYTES = 32


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
                key_prefix=key[:12],
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


async def authenticate(engine: AsyncEngine, authorization: str | None, kind: CallerKind) -> Caller:
    """Resolve an ``Authorization: Bearer`` header (RFC 6750 §2.1) to an active caller."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("send Authorization: Bearer <key>")
    if not key.startswith(KEY_PREFIX[kind]):
        raise Unauthenticated(f"this endpoint needs a {kind.value} credential")
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(callers).where(callers.c.key_hash == hash_key(key))))
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
