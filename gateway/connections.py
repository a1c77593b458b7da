"""Connections: a customer's linked accounts and their sealed tokens.

A connection is keyed by (customer, provider, issuer, subject): linking the
same account again updates it rather than creating a twin. Tokens are sealed
by the vault with the connection id and column name as associated data.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.account_claims import AccountClaimsStore
from gateway.audit import AuditOutbox, EventDraft, OutboxEntry
from gateway.errors import NotFound
from gateway.oauth import TokenSet
from gateway.provider_tokens import ScopedTokenStore
from gateway.single_flight import LoadsInFlight, SingleFlight
from gateway.storage import account_claims, connections, provider_tokens, writer
from gateway.vault import KeyRing, token_row
from gateway.webhooks import EventType, WebhookOutbox
from providers.base import Account


class Status(enum.StrEnum):
    ACTIVE = "active"
    REFRESHING = "refreshing"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    customer_id: str
    provider: str
    issuer: str
    subject: str
    account_name: str
    scopes: tuple[str, ...]
    status: Status
    status_reason: str | None
    token_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_refreshed_at: datetime | None
    linked_at: datetime
    # A second id the provider has for the account (providers.base.Account.alias).
    subject_alias: str | None = None
    sealed_access_token: str | None = field(default=None, repr=False)
    sealed_refresh_token: str | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The contract's shape; never a token."""
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "provider": self.provider,
            "account": {"id": self.subject, "name": self.account_name, "issuer": self.issuer},
            "scopes": list(self.scopes),
            "status": self.status.value,
            "status_reason": self.status_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": self.token_expires_at.isoformat() if self.token_expires_at else None,
            "last_refreshed_at": (
                self.last_refreshed_at.isoformat() if self.last_refreshed_at else None
            ),
        }


def from_row(row: Any) -> Connection:
    return Connection(
        id=row["id"],
        customer_id=row["customer_id"],
        provider=row["provider"],
        issuer=row["issuer"],
        subject=row["subject"],
        account_name=row["account_name"],
        scopes=tuple(row["scopes"]),
        status=Status(row["status"]),
        status_reason=row["status_reason"],
        token_expires_at=row["token_expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_refreshed_at=row["last_refreshed_at"],
        linked_at=row["linked_at"],
        subject_alias=row["subject_alias"],
        sealed_access_token=row["access_token"],
        sealed_refresh_token=row["refresh_token"],
    )


def sealed_tokens(vault: KeyRing, connection_id: str, tokens: TokenSet) -> dict[str, Any]:
    """Column values for a fresh token set; a missing refresh token leaves the old one alone."""
    values: dict[str, Any] = {
        "access_token": vault.seal(
            tokens.access_token, row=token_row(connection_id, "access_token")
        ),
        "token_expires_at": (
            datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at else None
        ),
    }
    if tokens.refresh_token:
        values["refresh_token"] = vault.seal(
            tokens.refresh_token, row=token_row(connection_id, "refresh_token")
        )
    return values


# How long the records path trusts a connection row it read, without reading it
# again. This is the staleness bound across replicas: a revocation, suppression,
# needs_reauth or refresh made by *another* replica takes effect here within
# this many seconds (a provider 401 on a stale token forces a refresh, which
# re-reads the row under its lock, sooner). Changes made through this process
# take effect at once (ConnectionStore.forget / remember). An entry never
# outlives its access token's expiry.
CONNECTION_CACHE_TTL = 2.0
CONNECTION_CACHE_SIZE = 4096


class ConnectionCache:
    """Recently read connection rows (sealed tokens included), bounded and short-lived.

    Without it every records request spent a pooled database connection (and,
    on PostgreSQL, a ping and BEGIN … ROLLBACK around the SELECT) re-reading a
    row that changes on refresh, revoke and status changes only. Concurrent
    misses on one connection share one read (:meth:`load`).
    """

    def __init__(
        self,
        ttl: float = CONNECTION_CACHE_TTL,
        size: int = CONNECTION_CACHE_SIZE,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        loads: LoadsInFlight | None = None,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._now = now
        self._entries: OrderedDict[str, tuple[float, Connection]] = OrderedDict()
        # Bumped by every forget(): a read that started before a change committed
        # must not put its older row back after the change dropped it.
        self.generation = 0
        self._loads: SingleFlight[str, Connection | None] = SingleFlight(loads)

    def get(self, connection_id: str) -> Connection | None:
        entry = self._entries.get(connection_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[connection_id]
            return None
        return entry[1]

    def put(self, connection: Connection, *, read_at: int | None = None) -> None:
        """Keep ``connection``; ``read_at`` is :attr:`generation` when its read began."""
        if read_at is not None and read_at != self.generation:
            return
        ttl = self._ttl
        if connection.token_expires_at is not None:
            # Never hand out a token past its expiry from memory.
            ttl = min(ttl, (connection.token_expires_at - self._now()).total_seconds())
        if ttl <= 0:
            self._entries.pop(connection.id, None)
            return
        self._entries[connection.id] = (self._clock() + ttl, connection)
        self._entries.move_to_end(connection.id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, connection_id: str) -> None:
        self.generation += 1
        self._entries.pop(connection_id, None)
        self._loads.forget(connection_id)  # a read in flight began before the change

    async def load(
        self,
        connection_id: str,
        read: Callable[[], Coroutine[Any, Any, Connection | None]],
        *,
        shared: bool = True,
    ) -> Connection | None:
        """``read()`` the row and keep it; ``None``: no such connection (nothing kept).

        ``shared``: concurrent misses on one id share one read (the records
        path); otherwise this call reads on its own, starting now.
        """

        read_at = self.generation  # now, not when the task starts: never after the read began

        async def read_and_keep() -> Connection | None:
            found = await read()
            if found is None:
                self.forget(connection_id)
            else:
                self.put(found, read_at=read_at)
            return found

        if not shared:
            return await read_and_keep()
        return await self._loads.run(connection_id, read_and_keep)


_GRANT_ENDED = frozenset({Status.REVOKED.value, Status.SUPPRESSED.value})  # no tokens left


class ConnectionStore:
    def __init__(
        self,
        engine: AsyncEngine,
        vault: KeyRing,
        webhooks: WebhookOutbox | None = None,
        *,
        cache: ConnectionCache | None = None,
        audit: AuditOutbox | None = None,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._webhooks = webhooks or WebhookOutbox.disabled()
        self._audit = audit  # link's and disconnect's audit events go in with the row
        self.scoped = ScopedTokenStore(engine, vault)  # per-object tokens (Meta Page tokens)
        # Identity claims kept at linking (Apple); a change to them may carry its audit event.
        self.claims = AccountClaimsStore(engine, vault, audit=audit)
        self.cache = cache or ConnectionCache()

    def remember(self, connection: Connection) -> None:
        """``connection`` as this process just read or wrote it (e.g. after a refresh)."""
        self.cache.put(connection)

    def forget(self, connection_id: str) -> None:
        """Drop ``connection_id`` from the cache: this process changed or deleted its row."""
        self.cache.forget(connection_id)

    async def link(
        self,
        *,
        customer_id: str,
        provider: str,
        account: Account,
        tokens: TokenSet,
        scopes: tuple[str, ...],
        audit_as: Callable[[Connection], EventDraft] | None = None,
    ) -> tuple[Connection, bool]:
        """Create the connection, or refresh the existing one for the same account.

        Returns the connection and whether it is new. ``audit_as`` builds the
        link's audit event, which goes into the audit outbox in the same
        transaction as the row (the link cannot be undone once the provider
        issued the tokens, so it is committed first and audited with it) and is
        then appended to the chain before this returns, or left to the drain if
        the audit log cannot take it now.
        """
        if audit_as is not None and self._audit is None:
            raise ValueError("audit_as needs a store built with an audit outbox")
        for _attempt in range(2):  # a concurrent first link of the same account wins once
            try:
                async with writer(self._engine).begin() as conn:
                    linked = await self._link(conn, customer_id, provider, account, tokens, scopes)
                    entry = (
                        await self._audit.add(conn, audit_as(linked[0]))
                        if audit_as is not None and self._audit is not None
                        else None
                    )
                self.forget(linked[0].id)
                if entry is not None and self._audit is not None:
                    await self._audit.deliver(entry)
                return linked
            except IntegrityError:
                continue
        raise RuntimeError(
            "could not link the account after a concurrent insert"
        )  # pragma: no cover

    async def _link(
        self,
        conn: AsyncConnection,
        customer_id: str,
        provider: str,
        account: Account,
        tokens: TokenSet,
        scopes: tuple[str, ...],
    ) -> tuple[Connection, bool]:
        now = datetime.now(UTC)
        key = (
            connections.c.customer_id == customer_id,
            connections.c.provider == provider,
            connections.c.issuer == account.issuer,
            connections.c.subject == account.subject,
        )
        before = (
            await conn.execute(select(connections.c.id, connections.c.status).where(*key))
        ).first()
        existing = before.id if before else None
        connection_id = existing or f"con_{uuid.uuid4().hex[:24]}"
        values = {
            **sealed_tokens(self._vault, connection_id, tokens),
            "account_name": account.name,
            "subject_alias": account.alias or None,
            "scopes": list(scopes),
            "status": Status.ACTIVE.value,
            "status_reason": None,
            "updated_at": now,
            "last_refreshed_at": now,
            "linked_at": now,
            "refresh_failures": 0,
            "refresh_cooldown_until": None,
        }
        if existing:
            await conn.execute(
                update(connections).where(connections.c.id == existing).values(values)
            )
        else:
            await conn.execute(
                connections.insert().values(
                    id=connection_id,
                    customer_id=customer_id,
                    provider=provider,
                    issuer=account.issuer,
                    subject=account.subject,
                    created_at=now,
                    **values,
                )
            )
        row = (
            (await conn.execute(select(connections).where(connections.c.id == connection_id)))
            .mappings()
            .one()
        )
        linked = from_row(row)
        if before is not None and before.status == Status.NEEDS_REAUTH.value:
            await self._webhooks.add(conn, EventType.RECOVERED, linked)  # same transaction
        return linked, existing is None

    async def get(
        self, connection_id: str, *, customers: frozenset[str], cached: bool = False
    ) -> Connection:
        """The connection, or 404 when it does not exist *or* belongs to another customer.

        ``cached``: the records path accepts a row read in the last
        :data:`CONNECTION_CACHE_TTL` seconds (see there for what that means).
        """
        found = self.cache.get(connection_id) if cached else None
        if found is None:
            read = partial(self._read, connection_id)
            found = await self.cache.load(connection_id, read, shared=cached)
        if found is None or found.customer_id not in customers:
            # Another customer's connection looks exactly like a missing one to
            # the caller; its owner's log still records the attempt.
            raise NotFound(
                f"no connection {connection_id!r}",
                refused_customer=found.customer_id if found is not None else None,
            )
        return found

    async def _read(self, connection_id: str) -> Connection | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(connections).where(connections.c.id == connection_id)))
                .mappings()
                .first()
            )
        return None if row is None else from_row(row)

    async def by_account(self, provider: str, issuer: str, subject: str) -> list[Connection]:
        """Every customer's connection to one provider account (its notifications name it),
        by the account's id or by the second id it was linked with (``Account.alias``)."""
        c = connections.c
        query = (
            select(connections)
            .where(
                c.provider == provider,
                c.issuer == issuer,
                or_(c.subject == subject, c.subject_alias == subject),
            )
            .order_by(c.created_at, c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [from_row(row) for row in rows]

    async def list(self, customer_id: str) -> list[Connection]:
        query = (
            select(connections)
            .where(connections.c.customer_id == customer_id)
            .order_by(connections.c.created_at, connections.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [from_row(row) for row in rows]

    def open_token(self, connection: Connection, name: str) -> str | None:
        sealed = (
            connection.sealed_access_token
            if name == "access_token"
            else connection.sealed_refresh_token
        )
        if sealed is None:
            return None
        return self._vault.open(sealed, row=token_row(connection.id, name))

    async def mark_revoked(
        self, connection_id: str, reason: str, *, audit_as: EventDraft | None = None
    ) -> None:
        """Disconnected: forget the tokens; the row stays so the audit trail keeps its subject.

        ``audit_as`` (a disconnect's ``connection.deleted``) is committed with the change,
        as :meth:`end_grant` says.
        """
        await self.end_grant(connection_id, status=Status.REVOKED, reason=reason, audit_as=audit_as)

    async def end_grant(
        self,
        connection_id: str,
        *,
        status: Status,
        reason: str,
        audit_as: EventDraft | None = None,
    ) -> None:
        """Forget every token of the connection (its own and scoped ones), and the identity
        claims kept beside them, and set ``status``.

        ``revoked`` (disconnected) and ``suppressed`` (consent withdrawn) both end
        here; only a move to ``revoked`` is a health webhook. ``audit_as``: the
        change's audit event, committed with it through the audit outbox (as
        :meth:`link` does) and appended to the chain after, or by the outbox's
        drain when the audit log cannot take it now.
        """
        async with writer(self._engine).begin() as conn:
            await self._end_grant(conn, connection_id, status=status, reason=reason)
            entry = await self._outboxed(conn, audit_as)
        self.forget(connection_id)  # committed: no request of this process uses the tokens now
        await self._deliver(entry)

    async def delete(self, connection_id: str) -> None:
        """Delete the connection, its scoped tokens and kept claims (erasure of its holder)."""
        async with writer(self._engine).begin() as conn:
            await self._delete(conn, connection_id)
        self.forget(connection_id)

    async def erase(self, connection_id: str, *, reason: str, audit_as: EventDraft) -> bool:
        """End the grant (``revoked``, with its webhook, unless it had already ended) and
        delete the connection, in one transaction with its audit event (``audit_as``,
        through the audit outbox): a deletion the provider asked for is done, and on
        record, or not done at all; never a revoked row left holding the account.
        False (and no event) when the row was already gone."""
        async with writer(self._engine).begin() as conn:
            status = (
                await conn.execute(
                    select(connections.c.status).where(connections.c.id == connection_id)
                )
            ).scalar()
            if status is None:
                return False  # erased meanwhile (a duplicate delivery handled concurrently)
            if status not in _GRANT_ENDED:  # the revoked webhook, as for any ended grant
                await self._end_grant(conn, connection_id, status=Status.REVOKED, reason=reason)
            await self._delete(conn, connection_id)
            entry = await self._outboxed(conn, audit_as)
        self.forget(connection_id)
        await self._deliver(entry)
        return True

    async def _end_grant(
        self, conn: AsyncConnection, connection_id: str, *, status: Status, reason: str
    ) -> None:
        before = (
            (await conn.execute(select(connections).where(connections.c.id == connection_id)))
            .mappings()
            .first()
        )
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection_id)
            .values(
                status=status.value,
                status_reason=reason,
                access_token=None,
                refresh_token=None,
                token_expires_at=None,
                updated_at=datetime.now(UTC),
            )
        )
        await conn.execute(  # Page tokens and the like end with the grant
            delete(provider_tokens).where(provider_tokens.c.connection_id == connection_id)
        )
        await conn.execute(  # so do the kept identity claims (gateway.account_claims)
            delete(account_claims).where(account_claims.c.connection_id == connection_id)
        )
        moved = before is not None and before["status"] != status.value
        if moved and status is Status.REVOKED:
            revoked = replace(from_row(before), status=status, status_reason=reason)
            await self._webhooks.add(conn, EventType.REVOKED, revoked)  # same transaction

    @staticmethod
    async def _delete(conn: AsyncConnection, connection_id: str) -> None:
        await conn.execute(
            delete(provider_tokens).where(provider_tokens.c.connection_id == connection_id)
        )
        await conn.execute(
            delete(account_claims).where(account_claims.c.connection_id == connection_id)
        )
        await conn.execute(delete(connections).where(connections.c.id == connection_id))

    async def _outboxed(
        self, conn: AsyncConnection, draft: EventDraft | None
    ) -> OutboxEntry | None:
        if draft is None:
            return None
        if self._audit is None:
            raise ValueError("an audit event needs a store built with an audit outbox")
        return await self._audit.add(conn, draft)

    async def _deliver(self, entry: OutboxEntry | None) -> None:
        if entry is not None and self._audit is not None:
            await self._audit.deliver(entry)  # never raises: the drain appends what it cannot
