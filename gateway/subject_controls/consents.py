"""End Users' marketing consent, recorded and withdrawn by the customer they gave it to.

Notice ("End User Personal Data"): "For our End Users, we do not use the data
we collect about you when you use our services for marketing without your
consent." A consent names one purpose that needs it (``requires_consent`` in
the policy data, e.g. ``marketing.communications``) and covers that purpose
and its more specific ones. It is kept per customer, its subject only as
keyed identifier hashes (:mod:`gateway.subject_controls.subjects`).

Withdrawing ends the consent for its whole subject, whichever of the
subject's identifiers the withdrawal names: one identifier still consenting
would otherwise keep the person consented (``policies.rules.purpose``
accepts consent through any identifier). It adds no suppression. Notice
(YOUR PRIVACY RIGHTS): "Withdrawal of Consent ... will not affect the
lawfulness of any processing ... conducted in reliance of lawful processing
grounds other than consent" — so support, service and security uses of the
End User's data go on; only the consent-based purposes stop. A full
``consent_withdrawal`` suppression is a processor request's decision
(:class:`~gateway.subject_controls.suppressions.SuppressionStore`).

Every change is an audit event (``consent.recorded``, ``consent.withdrawn``)
carrying the subject's hashes, the purpose and the caller; never the evidence
note, never an identifier.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import audit
from gateway.audit import Action, AuditOutbox, AuditWriter, EventDraft, Outcome, SubjectHasher
from gateway.errors import AuditUnavailable, InvalidParameter
from gateway.observability import current_trace_id
from gateway.storage.engine import writer
from gateway.subject_controls.lookup import ControlsPresence
from gateway.subject_controls.subjects import check_note, hash_identifiers
from gateway.subject_controls.tables import SubjectControlTables
from policies import Identifier, Policy, is_within

if TYPE_CHECKING:
    from gateway.callers import Caller

__all__ = ["Consent", "ConsentStore", "Withdrawal", "consent_purpose"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    id: str
    customer_id: str
    purpose: str
    recorded_at: datetime
    recorded_by: str
    subject_hashes: tuple[str, ...]

    def public(self) -> dict[str, object]:
        """What the API answers: no identifier, no evidence note."""
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "purpose": self.purpose,
            "recorded_at": self.recorded_at.isoformat(),
            "identifiers": len(self.subject_hashes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawal:
    customer_id: str
    purpose: str | None  # None: every consent of the subject
    withdrawn_at: datetime
    consent_ids: tuple[str, ...]

    def public(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "purpose": self.purpose,
            "withdrawn_at": self.withdrawn_at.isoformat(),
            "withdrawn": list(self.consent_ids),
        }


def consent_purpose(policy: Policy, purpose: object, *, name: str = "purpose") -> str:
    """``purpose`` when consent can make it lawful; 400 otherwise.

    Consent is recorded only for a known, allowed purpose whose policy entry
    requires consent. A purpose that amounts to a sale stays refused whatever
    anyone consented to (notice: "We will not rent or sell personal information").
    """
    if not isinstance(purpose, str) or not purpose:
        raise InvalidParameter(f"{name} must be a Fides data-use key", parameter=name)
    if policy.taxonomy.purpose_problem(purpose) is not None:
        raise InvalidParameter(f"{name} is not a known Fides data use", parameter=name)
    rule = policy.rule_for(purpose)
    if not policy.allows(purpose) or rule is None or not rule.requires_consent:
        raise InvalidParameter(
            f"{name} {purpose!r} is not a purpose that End User consent makes lawful",
            parameter=name,
        )
    return purpose


class ConsentStore:
    """Records and withdraws consents; writes the audit event for each change."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: SubjectControlTables,
        *,
        hasher: SubjectHasher,
        audit: AuditWriter,
        outbox: AuditOutbox,
        policy: Policy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        presence: ControlsPresence | None = None,
    ) -> None:
        self._engine = engine
        self._presence = presence  # the records path's "has any consent" cache
        self._writer = writer(engine)
        self._tables = tables
        self._hasher = hasher
        self._audit = audit  # consent recorded: audited first, fail closed
        self._outbox = outbox  # consent withdrawn: audited with the withdrawal
        self._policy = policy
        self._clock = clock

    async def record(
        self,
        customer_id: str,
        identifiers: Sequence[Identifier],
        *,
        purpose: str,
        actor: Caller,
        evidence: str | None = None,
    ) -> Consent:
        """Record that the subject consented to ``purpose``; returns once audited and stored."""
        purpose = consent_purpose(self._policy, purpose)
        evidence = check_note(evidence, identifiers, name="evidence")
        hashes = hash_identifiers(self._hasher, customer_id, identifiers)
        consent = Consent(
            id=f"cns_{uuid.uuid4().hex[:24]}",
            customer_id=customer_id,
            purpose=purpose,
            recorded_at=self._clock(),
            recorded_by=actor.id,
            subject_hashes=hashes,
        )
        # Audit first: consent widens what may be released, so without a
        # durable record of it there is no consent (privacy notice, "accountable").
        try:
            await self._audit.record(
                _event(Action.CONSENT_RECORDED, customer_id, actor, purpose, hashes, count=1)
            )
        except audit.AuditUnavailable as exc:
            raise AuditUnavailable(str(exc)) from None
        t = self._tables
        async with self._writer.begin() as conn:
            await conn.execute(
                insert(t.consents).values(
                    id=consent.id,
                    customer_id=customer_id,
                    purpose=purpose,
                    evidence=evidence,
                    recorded_at=consent.recorded_at,
                    recorded_by=actor.id,
                )
            )
            await conn.execute(
                insert(t.consent_subjects),
                [{"customer_id": customer_id, "subject_hash": h, "consent_id": consent.id}
                 for h in hashes],
            )  # fmt: skip
        if self._presence is not None:
            self._presence.changed(customer_id)  # committed: the next page looks it up
        log.info(
            "consent.recorded",
            customer_id=customer_id,
            consent_id=consent.id,
            purpose=purpose,
            identifiers=len(hashes),
        )
        return consent

    async def withdraw(
        self,
        customer_id: str,
        identifiers: Sequence[Identifier],
        *,
        actor: Caller,
        purpose: str | None = None,
    ) -> Withdrawal:
        """Withdraw the subject's active consents (for ``purpose``, or all of them).

        A consent whose purpose is broader than ``purpose`` is withdrawn whole:
        it cannot be narrowed, and keeping it would keep the narrower use lawful.
        """
        if purpose is not None and self._policy.taxonomy.purpose_problem(purpose) is not None:
            raise InvalidParameter("purpose is not a known Fides data use", parameter="purpose")
        hashes = hash_identifiers(self._hasher, customer_id, identifiers)
        now = self._clock()
        t = self._tables
        # The withdrawal and its event are committed together (the audit outbox):
        # a withdrawal takes effect even when the audit log is down, and its
        # event reaches the chain now or, failing that, with the outbox's drain.
        async with self._writer.begin() as conn:
            rows = await conn.execute(
                select(t.consents.c.id, t.consents.c.purpose)
                .join(t.consent_subjects, t.consent_subjects.c.consent_id == t.consents.c.id)
                .where(
                    t.consent_subjects.c.customer_id == customer_id,
                    t.consent_subjects.c.subject_hash.in_(hashes),
                    t.consents.c.withdrawn_at.is_(None),
                )
            )
            ids = sorted(
                {
                    row.id
                    for row in rows
                    if purpose is None
                    or is_within(row.purpose, purpose)
                    or is_within(purpose, row.purpose)
                }
            )
            if ids:
                await conn.execute(
                    update(t.consents)
                    .where(t.consents.c.id.in_(ids))
                    .values(withdrawn_at=now, withdrawn_by=actor.id)
                )
            entry = await self._outbox.add(
                conn,
                _event(
                    Action.CONSENT_WITHDRAWN, customer_id, actor, purpose, hashes, count=len(ids)
                ),
            )
        await self._outbox.deliver(entry)
        log.info(
            "consent.withdrawn",
            customer_id=customer_id,
            purpose=purpose,
            withdrawn=len(ids),
            identifiers=len(hashes),
        )
        return Withdrawal(
            customer_id=customer_id, purpose=purpose, withdrawn_at=now, consent_ids=tuple(ids)
        )


def _event(
    action: Action,
    customer_id: str,
    actor: Caller,
    purpose: str | None,
    hashes: tuple[str, ...],
    *,
    count: int,
) -> EventDraft:
    return EventDraft(
        customer_id=customer_id,
        action=action,
        outcome=Outcome.ALLOWED,
        caller_id=actor.id,
        caller_class=actor.caller_class.value,
        purpose=purpose,
        record_count=count,
        subjects=hashes,
        trace_id=current_trace_id(),
    )
