"""Disclosure accounting over audit events (sans-I/O).

The privacy notice's California section promises to tell an End User "the
categories of personal information we have disclosed … and the categories of
third parties with whom we have shared" it "in the preceding 12 months". A
disclosure, here, is an allowed ``records.read`` that released at least one
record: the caller's class (internal, affiliate, third_party) is the category
of recipient, the event's ``categories`` are what was released, ``purpose`` is
why. Denied and failed reads released nothing and are not disclosures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.audit.event import Action, AuditEvent, Outcome

__all__ = ["Disclosures", "account_disclosures", "is_disclosure", "months_before"]

UNKNOWN = "unknown"


def is_disclosure(event: AuditEvent) -> bool:
    """Whether the event released End User data to its caller."""
    return (
        event.action is Action.RECORDS_READ
        and event.outcome is Outcome.ALLOWED
        and event.record_count > 0
    )


@dataclass(slots=True)
class _Tally:
    events: int = 0
    records: int = 0

    def add(self, event: AuditEvent) -> None:
        self.events += 1
        self.records += event.record_count

    def json(self) -> dict[str, int]:
        return {"events": self.events, "records": self.records}


@dataclass(slots=True)
class _Recipient:
    tally: _Tally = field(default_factory=_Tally)
    callers: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Disclosures:
    """Counts by category, by recipient class and by purpose."""

    total: _Tally = field(default_factory=_Tally)
    categories: dict[str, _Tally] = field(default_factory=dict)
    recipients: dict[str, _Recipient] = field(default_factory=dict)
    purposes: dict[str, _Tally] = field(default_factory=dict)

    def add(self, event: AuditEvent) -> None:
        self.total.add(event)
        for category in event.categories:
            self.categories.setdefault(category, _Tally()).add(event)
        recipient = self.recipients.setdefault(event.caller_class or UNKNOWN, _Recipient())
        recipient.tally.add(event)
        if event.caller_id:
            recipient.callers.add(event.caller_id)
        recipient.categories.update(event.categories)
        recipient.purposes.add(event.purpose or UNKNOWN)
        self.purposes.setdefault(event.purpose or UNKNOWN, _Tally()).add(event)

    def json(self) -> dict[str, Any]:
        return {
            **self.total.json(),
            "categories": {k: v.json() for k, v in sorted(self.categories.items())},
            "recipients": {
                name: {
                    **r.tally.json(),
                    "callers": len(r.callers),
                    "categories": sorted(r.categories),
                    "purposes": sorted(r.purposes),
                }
                for name, r in sorted(self.recipients.items())
            },
            "purposes": {k: v.json() for k, v in sorted(self.purposes.items())},
        }


def account_disclosures(events: Iterable[AuditEvent]) -> Disclosures:
    """Sum up the disclosures among ``events``."""
    result = Disclosures()
    for event in events:
        if is_disclosure(event):
            result.add(event)
    return result


def months_before(moment: datetime, months: int) -> datetime:
    """The same instant ``months`` calendar months earlier, the day clamped to the
    month ("the preceding 12 months" of 31 March starts on 28 or 29 February)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:  # no such day in that month; every month has a 28th
            day -= 1
