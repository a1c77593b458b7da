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

Each customer's deletions are one ``retention.purged`` event per kind of data,
with the count (``resource`` names the kind). Safe on several replicas: each
statement deletes only what is still there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import audit
from gateway.audit import Action, AuditWriter, EventDraft, Outcome
from gateway.connections import Status
from gateway.errors import AuditUnavailable
from gateway.observability import current_trace_id
from gateway.processor_requests.store import RequestStore
from gateway.storage.engine import writer
from gateway.storage.schema import (
    account_claims,
    connect_sessions,
    connections,
    oauth_states,
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
    """Per kind of data, per customer, how many were deleted."""

    deleted: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, kind: str, customer_id: str, count: int) -> None:
        if count:
            per = self.deleted.setdefault(kind, {})
            per[customer_id] = per.get(customer_id, 0) + count

    def totals(self) -> dict[str, int]:
        return {kind: sum(per.values()) for kind, per in sorted(self.deleted.items())}


async def purge(
    engine: AsyncEngine,
    store: RequestStore,
    audit_writer: AuditWriter,
    policy: Policy,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PurgeReport:
    """One pass over everything the gateway stores with a retention period."""
    moment = now()
    report = PurgeReport()
    await _dead_connections(engine, policy, moment, report)
    await _expired_sessions(engine, moment, report)
    bundle_days = policy.retention_days(BUNDLES_CATEGORY)
    if bundle_days is not None:
        for customer_id, count in (
            await store.purge_files(moment - timedelta(days=bundle_days))
        ).items():
            report.add("processor_request_files", customer_id, count)
    for kind, per_customer in report.deleted.items():
        for customer_id, count in per_customer.items():
            await _audit(audit_writer, customer_id, kind, count)
    log.info("retention.purged", **report.totals())
    return report


async def _dead_connections(
    engine: AsyncEngine, policy: Policy, moment: datetime, report: PurgeReport
) -> None:
    """A dead connection's tokens (its own and its scoped ones, e.g. Page tokens) and
    the identity claims kept beside them, once past ``user.authorization``'s period."""
    days = policy.retention_days(TOKENS_CATEGORY)
    if days is None:
        return
    c = connections
    dead = select(c.c.id).where(
        c.c.status.in_([Status.REVOKED.value, Status.NEEDS_REAUTH.value]),
        c.c.updated_at < moment - timedelta(days=days),
    )
    async with writer(engine).begin() as conn:
        owners = dict(
            (
                await conn.execute(
                    select(c.c.id, c.c.customer_id).where(
                        c.c.id.in_(dead),
                        or_(c.c.access_token.is_not(None), c.c.refresh_token.is_not(None)),
                    )
                )
            ).all()
        )
        if owners:
            await conn.execute(
                update(c)
                .where(c.c.id.in_(list(owners)))
                .values(access_token=None, refresh_token=None, token_expires_at=None)
            )
        kinds = {"connection_tokens": list(owners)}
        for kind, table in (("scoped_tokens", provider_tokens), ("account_claims", account_claims)):
            deleted = await conn.execute(
                delete(table)
                .where(table.c.connection_id.in_(dead))
                .returning(table.c.connection_id)
            )
            kinds[kind] = list(deleted.scalars())
        customers = dict(
            (await conn.execute(select(c.c.id, c.c.customer_id).where(c.c.id.in_(dead)))).all()
        )
    for kind, connection_ids in kinds.items():
        for connection_id in connection_ids:
            report.add(kind, customers[connection_id], 1)


async def _expired_sessions(engine: AsyncEngine, moment: datetime, report: PurgeReport) -> None:
    s, o = connect_sessions, oauth_states
    async with writer(engine).begin() as conn:
        states = (
            await conn.execute(
                select(o.c.state_hash, s.c.customer_id)
                .join(s, s.c.id == o.c.session_id)
                .where(or_(o.c.expires_at < moment, s.c.expires_at < moment))
            )
        ).all()
        if states:
            await conn.execute(delete(o).where(o.c.state_hash.in_([r.state_hash for r in states])))
        sessions = (
            await conn.execute(select(s.c.id, s.c.customer_id).where(s.c.expires_at < moment))
        ).all()
        if sessions:
            await conn.execute(delete(s).where(s.c.id.in_([r.id for r in sessions])))
    for row in states:
        report.add("oauth_states", row.customer_id, 1)
    for row in sessions:
        report.add("connect_sessions", row.customer_id, 1)


async def _audit(audit_writer: AuditWriter, customer_id: str, kind: str, count: int) -> None:
    draft = EventDraft(
        customer_id=customer_id,
        action=Action.RETENTION_PURGED,
        outcome=Outcome.ALLOWED,
        caller_id=PURGE_ACTOR,
        resource=kind,
        record_count=count,
        trace_id=current_trace_id(),
    )
    try:
        await audit_writer.record(draft)
    except audit.AuditUnavailable as exc:
        raise AuditUnavailable(str(exc)) from None
