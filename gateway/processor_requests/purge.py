"""The retention purge: delete what is past its retention period, and say so in the audit log.

Privacy notice, "Data retention": "We will retain your personal information
for no longer than is necessary ... where we have no ongoing legitimate
business need to process your personal information, we will either delete
or anonymize it." Periods come from the policy data
(``Policy.retention_days(category)``):

* tokens of dead connections (``revoked`` or ``needs_reauth`` untouched for
  longer than ``user.authorization``'s period): the sealed tokens are deleted,
  the row stays so the audit trail keeps its connection; its scoped tokens
  (gateway.provider_tokens, e.g. Facebook Page tokens) and the identity claims
  kept beside them (gateway.account_claims) are deleted with them;
* connect sessions and OAuth states past their expiry: useless once expired,
  deleted at once (they hold a sealed PKCE verifier and nonce);
* downloads of finished processor requests older than ``user``'s period.

Each customer's deletion of each kind of data is one transaction that also
writes its ``retention.purged`` event (``resource`` names the kind,
``record_count`` the rows) into the audit outbox (:mod:`gateway.audit.outbox`):
the deletion and the record of it commit together or not at all, and the
event is appended to the chain right after (or, if that append fails or the
process dies first, by the outbox's drain). A deletion is never without its
record, whatever fails in between.

Safe on several replicas: each statement deletes only what is still there
and counts what it deleted itself (``RETURNING``), so two purges at once
delete each row once and record it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    Update,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import Action, AuditOutbox, EventDraft, Outcome
from gateway.connections import Status
from gateway.observability import current_trace_id
from gateway.storage.engine import writer
from gateway.storage.schema import (
    account_claims,
    connect_sessions,
    connections,
    oauth_states,
    processor_request_tables,
    provider_tokens,
)
from policies import Policy

__all__ = ["PURGE_ACTOR", "PurgeReport", "purge"]

log = structlog.get_logger(__name__)

PURGE_ACTOR = "linkgate-purge"
TOKENS_CATEGORY = "user.authorization"  # policy.toml: "tokens of dead connections"
BUNDLES_CATEGORY = "user"


@dataclass(slots=True)
class PurgeReport:
    """Per kind of data, per customer, how many were deleted; and how many of their
    ``retention.purged`` events this run did not append itself: the audit log
    refused them (``audit.outboxed`` is logged; they wait in the audit outbox for
    its drain) or, rarely, another replica's drain appended them first."""

    deleted: dict[str, dict[str, int]] = field(default_factory=dict)
    events_outboxed: int = 0

    def add(self, kind: str, customer_id: str, count: int) -> None:
        if count:
            per = self.deleted.setdefault(kind, {})
            per[customer_id] = per.get(customer_id, 0) + count

    def totals(self) -> dict[str, int]:
        return {kind: sum(per.values()) for kind, per in sorted(self.deleted.items())}


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of data past retention: which customers have some, and one customer's deletion.

    ``delete`` is an UPDATE or DELETE ... RETURNING limited to the customer:
    it counts only the rows this statement changed.
    """

    name: str
    customers: Select[Any]
    delete: Callable[[str], Update | Delete]


async def purge(
    engine: AsyncEngine,
    outbox: AuditOutbox,
    policy: Policy,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PurgeReport:
    """One pass over everything the gateway stores with a retention period."""
    moment = now()
    report = PurgeReport()
    for kind in _kinds(policy, moment):
        async with engine.connect() as conn:
            customers = sorted({str(c) for c in (await conn.execute(kind.customers)).scalars()})
        for customer_id in customers:
            async with writer(engine).begin() as conn:
                count = await _delete(conn, kind, customer_id)
                entry = (
                    await outbox.add(conn, _purged(customer_id, kind.name, count))
                    if count
                    else None
                )
            if entry is None:
                continue  # another replica's purge took them meanwhile
            report.add(kind.name, customer_id, count)
            if await outbox.deliver(entry) is None:
                report.events_outboxed += 1
    log.info("retention.purged", **report.totals())
    return report


async def _delete(conn: AsyncConnection, kind: _Kind, customer_id: str) -> int:
    return len((await conn.execute(kind.delete(customer_id))).all())


def _kinds(policy: Policy, moment: datetime) -> list[_Kind]:
    """In deletion order: a session's states go before the session."""
    kinds: list[_Kind] = []
    token_days = policy.retention_days(TOKENS_CATEGORY)
    if token_days is not None:
        kinds.extend(_dead_connection_kinds(moment - timedelta(days=token_days)))
    kinds.extend(_expired_session_kinds(moment))
    bundle_days = policy.retention_days(BUNDLES_CATEGORY)
    if bundle_days is not None:
        kinds.append(_request_files_kind(moment - timedelta(days=bundle_days)))
    return kinds


def _dead_connection_kinds(cutoff: datetime) -> list[_Kind]:
    """A dead connection's tokens (its own and its scoped ones, e.g. Page tokens) and
    the identity claims kept beside them, once past ``user.authorization``'s period."""
    c = connections
    is_dead = and_(
        c.c.status.in_([Status.REVOKED.value, Status.NEEDS_REAUTH.value]),
        c.c.updated_at < cutoff,
    )

    def dead(*where: ColumnElement[bool]) -> Select[tuple[str]]:
        return select(c.c.id).where(is_dead, *where)

    holds_tokens = or_(c.c.access_token.is_not(None), c.c.refresh_token.is_not(None))
    kinds = [
        _Kind(
            "connection_tokens",
            select(c.c.customer_id).where(is_dead, holds_tokens),
            # The conditions on the updated row itself, not a subquery of its table:
            # PostgreSQL rechecks them on a row another purge changed meanwhile
            # (READ COMMITTED), so that row is neither updated nor counted again.
            lambda customer_id: (
                update(c)
                .where(c.c.customer_id == customer_id, is_dead, holds_tokens)
                .values(access_token=None, refresh_token=None, token_expires_at=None)
                .returning(c.c.id)
            ),
        )
    ]

    def kept_beside(name: str, table: Table) -> _Kind:
        return _Kind(
            name,
            select(c.c.customer_id).where(
                c.c.id.in_(dead()), c.c.id.in_(select(table.c.connection_id))
            ),
            lambda customer_id: (
                delete(table)
                .where(table.c.connection_id.in_(dead(c.c.customer_id == customer_id)))
                .returning(table.c.connection_id)
            ),
        )

    return [
        *kinds,
        kept_beside("scoped_tokens", provider_tokens),
        kept_beside("account_claims", account_claims),
    ]


def _expired_session_kinds(moment: datetime) -> list[_Kind]:
    s, o = connect_sessions, oauth_states
    expired_sessions = select(s.c.id).where(s.c.expires_at < moment)

    def expired_states(*where: ColumnElement[bool]) -> ColumnElement[bool]:
        return and_(
            o.c.session_id.in_(select(s.c.id).where(*where)),
            or_(o.c.expires_at < moment, o.c.session_id.in_(expired_sessions)),
        )

    return [
        _Kind(
            "oauth_states",
            select(s.c.customer_id).join(o, o.c.session_id == s.c.id).where(expired_states()),
            lambda customer_id: (
                delete(o)
                .where(expired_states(s.c.customer_id == customer_id))
                .returning(o.c.state_hash)
            ),
        ),
        _Kind(
            "connect_sessions",
            select(s.c.customer_id).where(s.c.expires_at < moment),
            lambda customer_id: (
                delete(s)
                .where(s.c.customer_id == customer_id, s.c.expires_at < moment)
                .returning(s.c.id)
            ),
        ),
    ]


def _request_files_kind(finished_before: datetime) -> _Kind:
    """Downloads (portability bundles) of requests finished before the cut-off."""
    r, b = processor_request_tables.requests, processor_request_tables.bundles

    def finished(*where: ColumnElement[bool]) -> Select[tuple[str]]:
        return select(r.c.id).where(
            r.c.finished_at.is_not(None), r.c.finished_at < finished_before, *where
        )

    return _Kind(
        "processor_request_files",
        select(r.c.customer_id).where(r.c.id.in_(finished()), r.c.id.in_(select(b.c.request_id))),
        lambda customer_id: (
            delete(b)
            .where(b.c.request_id.in_(finished(r.c.customer_id == customer_id)))
            .returning(b.c.request_id)
        ),
    )


def _purged(customer_id: str, kind: str, count: int) -> EventDraft:
    return EventDraft(
        customer_id=customer_id,
        action=Action.RETENTION_PURGED,
        outcome=Outcome.ALLOWED,
        caller_id=PURGE_ACTOR,
        resource=kind,
        record_count=count,
        trace_id=current_trace_id(),
    )
