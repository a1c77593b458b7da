"""The processor-request state machine, due dates and duplicates (sans-I/O).

A customer (the controller) brings an End User's request to the gateway (the
processor). Privacy notice, "Your privacy rights": "We will then help them to
fulfill that request in accordance with their instructions." The life of one
request::

    received ──verify──▶ verified ──claim──▶ running ──▶ completed
        │                   │                  │  └──▶ failed
        └────── reject ─────┴──────────────────┘──▶ rejected (with a reason)

``verified`` records who at the customer attested the requester's identity
(notice: "we may need additional information to verify your identity"; GDPR
Art. 12(6), CCPA §1798.140(ak) "verifiable consumer request"). ``running``
may be re-entered by another runner once the previous one's lease has lapsed
(a crashed replica): that is how a request resumes.

Due dates: GDPR Art. 12(3) "without undue delay and in any event within one
month" (30 days here); CCPA §1798.130(a)(2)(B) "within 45 calendar days". A
request names its ``jurisdiction``; without one the stricter 30 days apply,
and both dates are always shown.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from gateway.errors import Conflict

__all__ = [
    "DUE_DAYS",
    "OPEN",
    "TERMINAL",
    "TRANSITIONS",
    "InvalidTransition",
    "Jurisdiction",
    "Kind",
    "Status",
    "due_at",
    "due_dates",
    "duplicate_key",
    "is_overdue",
    "transition",
]


class Kind(enum.StrEnum):
    """The rights of the notice's "Your privacy rights" list a request may exercise."""

    ACCESS = "access"
    PORTABILITY = "portability"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    CONSENT_WITHDRAWAL = "consent_withdrawal"

    @property
    def takes_purposes(self) -> bool:
        """Restriction, objection ("for certain purposes") and consent withdrawal name purposes."""
        return self in (Kind.RESTRICTION, Kind.OBJECTION, Kind.CONSENT_WITHDRAWAL)


class Status(enum.StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


class Jurisdiction(enum.StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"


DUE_DAYS: Mapping[Jurisdiction, int] = MappingProxyType(
    {Jurisdiction.GDPR: 30, Jurisdiction.CCPA: 45}
)
STRICTEST = Jurisdiction.GDPR

TRANSITIONS: Mapping[Status, frozenset[Status]] = MappingProxyType(
    {
        Status.RECEIVED: frozenset({Status.VERIFIED, Status.REJECTED}),
        Status.VERIFIED: frozenset({Status.RUNNING, Status.REJECTED}),
        # running → running: another runner resumes after the lease lapsed.
        Status.RUNNING: frozenset(
            {Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.REJECTED}
        ),
        Status.COMPLETED: frozenset(),
        Status.FAILED: frozenset(),
        Status.REJECTED: frozenset(),
    }
)
OPEN = frozenset({Status.RECEIVED, Status.VERIFIED, Status.RUNNING})
TERMINAL = frozenset(Status) - OPEN


class InvalidTransition(Conflict):
    problem = "processor-request-state"
    title = "The processor request is not in a state that allows this"


def transition(current: Status, target: Status) -> Status:
    """``target`` when the table allows ``current → target``; 409 otherwise."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            f"a {current.value} request cannot become {target.value}",
            status_now=current.value,
        )
    return target


def due_at(received_at: datetime, jurisdiction: Jurisdiction | None) -> datetime:
    """When the answer is due: the named jurisdiction's period, else the stricter one."""
    return received_at + timedelta(days=DUE_DAYS[jurisdiction or STRICTEST])


def due_dates(received_at: datetime) -> dict[str, datetime]:
    """Both statutory deadlines, shown whichever applies."""
    return {j.value: received_at + timedelta(days=days) for j, days in DUE_DAYS.items()}


def is_overdue(status: Status, due: datetime, now: datetime) -> bool:
    """Still open after its due date."""
    return status in OPEN and now > due


def duplicate_key(customer_id: str, kind: Kind, subject_hashes: Iterable[str]) -> str:
    """One value per (customer, kind, subject hash set): equal for duplicates only."""
    material = "\n".join([customer_id, kind.value, *sorted(set(subject_hashes))])
    return hashlib.sha256(material.encode()).hexdigest()
