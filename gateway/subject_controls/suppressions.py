"""The suppression list: End Users whose records the gateway drops from now on.

Notice (YOUR PRIVACY RIGHTS): objection "to the collection or use of your
personal data for certain purposes", erasure, "restrict further processing",
and withdrawal of consent. Each becomes one :class:`Suppression` of the
customer that received the request, kept with its subject as keyed
identifier hashes only. Rule ``suppression`` (``policies.rules.suppression``)
then drops every record naming any of those identifiers.

Scope, by kind:

* ``erasure`` and ``consent_withdrawal`` cover every purpose (nothing may be
  released about someone whose data is to be erased; a full withdrawal, as a
  processor request records it, leaves no purpose the gateway can rely on);
* ``restriction`` and ``objection`` cover the purposes they name (and their
  more specific ones, as in the taxonomy) or, naming none, every purpose.

Suppressions are added, never edited or removed here: undoing one is a
decision for the processor-request workflow, not for this list.

Every addition is a ``suppression.added`` audit event with the subject's
hashes; for these events ``resource`` names the kind and ``purpose`` lists the
covered purposes separated by spaces (absent: every purpose). The reason is
not in the event (it is free text; the row keeps it).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import Action, AuditOutbox, EventDraft, Outcome, SubjectHasher
from gateway.errors import InvalidParameter
from gateway.observability import current_trace_id
from gateway.storage.engine import writer
from gateway.subject_controls.lookup import ControlsPresence
from gateway.subject_controls.subjects import check_note, hash_identifiers
from gateway.subject_controls.tables import ALL_PURPOSES, SubjectControlTables
from policies import Identifier, Taxonomy

if TYPE_CHECKING:
    from gateway.callers import Caller

__all__ = ["MAX_LIST", "Suppression", "SuppressionKind", "SuppressionStore"]

log = structlog.get_logger(__name__)

MAX_LIST = 200


class SuppressionKind(enum.StrEnum):
    ERASURE = "erasure"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    CONSENT_WITHDRAWAL = "consent_withdrawal"

    @property
    def per_purpose(self) -> bool:
        """Whether this kind may be limited to some purposes."""
        return self in (SuppressionKind.RESTRICTION, SuppressionKind.OBJECTION)


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppression:
    id: str
    customer_id: str
    kind: SuppressionKind
    purposes: tuple[str, ...]  # () = every purpose
    created_at: datetime
    created_by: str
    identifiers: int  # how many identifier hashes name the subject

    def public(self) -> dict[str, object]:
        """What the API shows: ids and counts, never an identifier or the reason."""
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "kind": self.kind.value,
            "purposes": list(self.purposes),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "identifiers": self.identifiers,
        }


class SuppressionStore:
    """Adds and lists suppressions; writes the audit event for each addition."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: SubjectControlTables,
        *,
        hasher: SubjectHasher,
        audit: AuditOutbox,
        taxonomy: Taxonomy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        presence: ControlsPresence | None = None,
    ) -> None:
        self._engine = engine
        self._presence = presence  # the records path's "has any suppression" cache
        self._writer = writer(engine)
        self._tables = tables
        self._hasher = hasher
        self._audit = audit
        self._taxonomy = taxonomy
        self._clock = clock

    async def add(
        self,
        customer_id: str,
        identifiers: Sequence[Identifier],
        *,
        kind: SuppressionKind | str,
        reason: str,
        actor: Caller,
        purposes: Iterable[str] = (),
    ) -> Suppression:
        """Suppress the subject from now on; returns once stored and audited.

        Raises ``InvalidParameter`` for an unknown kind or purpose, purposes on
        a kind that covers everything, an empty subject, or a reason that
        repeats an identifier. The audit event is committed with the
        suppression (the audit outbox); if the chain cannot take it now, the
        outbox's drain appends it later and this still returns.
        """
        kind = self._kind(kind)
        scope = self._purposes(kind, purposes)
        if not identifiers:
            raise InvalidParameter("the subject names no identifier", parameter="subject")
        reason_text = check_note(reason, identifiers, name="reason", required=True) or ""
        hashes = hash_identifiers(self._hasher, customer_id, identifiers)
        suppression = Suppression(
            id=f"sup_{uuid.uuid4().hex[:24]}",
            customer_id=customer_id,
            kind=kind,
            purposes=scope,
            created_at=self._clock(),
            created_by=actor.id,
            identifiers=len(hashes),
        )
        t = self._tables
        draft = EventDraft(
            customer_id=customer_id,
            action=Action.SUPPRESSION_ADDED,
            outcome=Outcome.ALLOWED,
            caller_id=actor.id,
            caller_class=actor.caller_class.value,
            resource=kind.value,
            purpose=" ".join(scope) or None,
            record_count=1,
            subjects=hashes,
            trace_id=current_trace_id(),
        )
        # Stored with its event (the audit outbox): a suppression protects the
        # End User, so it takes effect even if the audit log is down, and its
        # event reaches the chain now or with the outbox's drain.
        async with self._writer.begin() as conn:
            await conn.execute(
                insert(t.suppressions).values(
                    id=suppression.id,
                    customer_id=customer_id,
                    kind=kind.value,
                    purposes=list(scope),
                    reason=reason_text,
                    created_at=suppression.created_at,
                    created_by=actor.id,
                )
            )
            await conn.execute(
                insert(t.suppression_subjects),
                [
                    {
                        "customer_id": customer_id,
                        "subject_hash": h,
                        "suppression_id": suppression.id,
                        "scope": purpose,
                    }
                    for h in hashes
                    for purpose in (scope or (ALL_PURPOSES,))
                ],
            )
            entry = await self._audit.add(conn, draft)
        if self._presence is not None:
            self._presence.changed(customer_id)  # committed: in force for this process now
        await self._audit.deliver(entry)
        log.info(
            "suppression.added",
            customer_id=customer_id,
            suppression_id=suppression.id,
            kind=kind.value,
            identifiers=len(hashes),
        )
        return suppression

    async def latest(self, customer_id: str, *, limit: int = 50) -> list[Suppression]:
        """The customer's newest suppressions first."""
        t = self._tables
        count = (
            select(func.count())
            .where(t.suppression_subjects.c.suppression_id == t.suppressions.c.id)
            .correlate(t.suppressions)
            .scalar_subquery()
        )
        query = (
            select(t.suppressions, count.label("rows"))
            .where(t.suppressions.c.customer_id == customer_id)
            .order_by(t.suppressions.c.created_at.desc(), t.suppressions.c.id.desc())
            .limit(max(1, min(limit, MAX_LIST)))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_from_row(row) for row in rows]

    async def counts(self, customer_id: str) -> dict[str, int]:
        """How many suppressions of each kind the customer has."""
        t = self._tables
        query = (
            select(t.suppressions.c.kind, func.count())
            .where(t.suppressions.c.customer_id == customer_id)
            .group_by(t.suppressions.c.kind)
        )
        async with self._engine.connect() as conn:
            found = {row[0]: int(row[1]) for row in await conn.execute(query)}
        return {kind.value: found.get(kind.value, 0) for kind in SuppressionKind}

    @staticmethod
    def _kind(kind: SuppressionKind | str) -> SuppressionKind:
        try:
            return SuppressionKind(kind)
        except ValueError:
            raise InvalidParameter(
                f"kind must be one of {', '.join(k.value for k in SuppressionKind)}",
                parameter="kind",
            ) from None

    def _purposes(self, kind: SuppressionKind, purposes: Iterable[str]) -> tuple[str, ...]:
        scope = tuple(sorted(set(purposes)))
        if scope and not kind.per_purpose:
            raise InvalidParameter(
                f"{kind.value} covers every purpose; it takes no purposes", parameter="purposes"
            )
        for purpose in scope:
            if self._taxonomy.purpose_problem(purpose) is not None:
                raise InvalidParameter(
                    "purposes must be known Fides data uses", parameter="purposes"
                )
        return scope


def _from_row(row: Any) -> Suppression:
    purposes = tuple(row["purposes"])
    rows = int(row["rows"])
    return Suppression(
        id=row["id"],
        customer_id=row["customer_id"],
        kind=SuppressionKind(row["kind"]),
        purposes=purposes,
        created_at=row["created_at"],
        created_by=row["created_by"],
        identifiers=rows // max(1, len(purposes)),
    )
