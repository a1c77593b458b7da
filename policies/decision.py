"""Decisions that explain themselves.

A :class:`Decision` says what happens to one record (keep, keep with fields
redacted, drop) or to one request (keep = may proceed, drop = refused), which
rule decided and why, in words an auditor can read. A :class:`PageDecision`
sums a page up the way the records API and the audit log report it.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from policies.value_type import value_type
from policies.vocabulary import Record


class Outcome(enum.StrEnum):
    KEEP = "keep"
    REDACT = "redact"  # kept, with the fields named in ``redactions`` removed
    DROP = "drop"  # nothing of it leaves the gateway (for a request: refused)


@value_type
class Redaction:
    """One value withheld from a kept record, and the rule that withheld it.

    ``field`` is a key of ``Record.data``, or ``subjects[i].<kind>`` for an
    identifier removed from the i-th subject.
    """

    field: str
    rule_id: str
    reason: str


@value_type
class Decision:
    """The verdict on one record or one request.

    ``rule_id`` and ``reason`` name the rule that dropped or refused;
    ``redactions`` name each withheld value; ``record`` is what may be
    released (redactions and pseudonyms applied), None when dropped.
    """

    outcome: Outcome
    rule_id: str | None = None
    reason: str = ""
    redactions: tuple[Redaction, ...] = ()
    record: Record | None = None

    @property
    def allowed(self) -> bool:
        """True unless the record or request was dropped."""
        return self.outcome is not Outcome.DROP


@value_type
class RedactedField:
    """A redaction, located in the page."""

    record_id: str
    field: str
    rule_id: str


@dataclass(slots=True)
class PageDecision:
    """What a page of records became."""

    kept: list[Record] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # rule id -> records dropped
    redacted: list[RedactedField] = field(default_factory=list)
    categories_released: set[str] = field(default_factory=set)

    @property
    def redacted_counts(self) -> dict[str, int]:
        """Rule id -> values redacted, for the audit summary."""
        return dict(Counter(item.rule_id for item in self.redacted))
