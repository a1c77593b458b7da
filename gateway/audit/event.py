"""One access to End User data, as the audit log keeps it.

Services build an :class:`EventDraft` (what happened); the chain turns it into
an :class:`AuditEvent` by giving it its place in the customer's log (``seq``,
``occurred_at``, ``prev_hash``, ``hash``; see :mod:`gateway.audit.chain`).

The fields are the ones the privacy notice's "accountable" rule lists: caller,
customer, connection, resource, purpose, subjects touched, categories released,
records dropped by which rule, trace id, outcome. Subjects are per-customer
keyed hashes (:mod:`gateway.audit.subjects`), never clear identifiers.

Values are validated and normalized on construction (sorted categories and
subjects, plain ``dict`` for ``dropped``) so that two drafts meaning the same
thing serialize to the same bytes. Floats are refused anywhere in
``trace_summary``: integers and strings serialize identically in every JSON
implementation, which keeps the canonical form reproducible outside Python
(RFC 8785 §3.2.2.3 is where float formatting gets hard).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

__all__ = [
    "MAX_TRACE_SUMMARY_ITEMS",
    "Action",
    "AuditEvent",
    "EventDraft",
    "JSONValue",
    "OutboxEntry",
    "Outcome",
    "format_time",
    "parse_time",
]

JSONValue = str | int | bool | None | list["JSONValue"] | dict[str, "JSONValue"]

# A trace summary is a handful of spans, not the trace: bound it so a runaway
# span list cannot bloat every audit row.
MAX_TRACE_SUMMARY_ITEMS = 512

_SUBJECT_HASH = r"[a-z0-9-]+:[0-9a-f]{16,128}"
_SUBJECT_HASHES = re.compile(rf"{_SUBJECT_HASH}(?:\0{_SUBJECT_HASH})*")


class Action(enum.StrEnum):
    """What was done; ``noun.verb`` like the gateway's log events."""

    RECORDS_READ = "records.read"
    CONNECTION_CREATED = "connection.created"
    CONNECTION_REFRESHED = "connection.refreshed"
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    CONNECTION_DELETED = "connection.deleted"
    # The provider told us the grant ended (gateway.provider_notifications): the End
    # User removed the app there, or deleted the account (then the row is erased too).
    CONNECTION_REVOKED_BY_PROVIDER = "connection.revoked_by_provider"
    CONNECTION_ERASED_BY_PROVIDER = "connection.erased_by_provider"
    ACCOUNT_CLAIMS_UPDATED = "account_claims.updated"
    PROVIDER_NOTIFICATION_REFUSED = "provider_notification.refused"
    CONSENT_RECORDED = "consent.recorded"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    SUPPRESSION_ADDED = "suppression.added"
    PROCESSOR_REQUEST_STEP = "processor_request.step"
    RETENTION_PURGED = "retention.purged"
    CALLER_REFUSED = "caller.refused"
    # Requests refused for their key's rate (429), one event per caller, customer
    # and window, its counts in trace_summary["rate_limited"] (gateway.rate_limit_audit).
    ACCESS_RATE_LIMITED = "access.rate_limited"
    KEYS_ROTATED = "keys.rotated"
    CONFIG_CHANGED = "config.changed"


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


# What an EventDraft leaves out by default; never stored as they are (the draft
# keeps a normalized copy of each), so one immutable instance serves every draft.
_NOTHING_DROPPED: Mapping[str, int] = MappingProxyType({})
_NO_SUMMARY: Mapping[str, JSONValue] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True, init=False)
class EventDraft:
    """What a service knows about an access before the log gives it a place.

    Frozen: assigning a field raises ``FrozenInstanceError``. The ``__init__``
    is written out rather than generated (one per records request, so on the
    hot path): a frozen dataclass's generated ``__init__`` sets every field
    through ``object.__setattr__`` and ``__post_init__`` sets the normalized
    ones again, about 1,300 instructions per call counted under callgrind;
    this one checks and normalizes the values in a plain dict and fills the
    instance dict with them in one update. Its parameters are the fields, in
    order, with the same defaults (a test holds the two to each other), and a
    subclass's generated ``__init__`` (``AuditEvent``) ends in
    :meth:`__post_init__`, which runs the same checks.
    """

    customer_id: str
    action: Action
    outcome: Outcome
    problem_type: str | None = None
    caller_id: str | None = None
    caller_class: str | None = None
    connection_id: str | None = None
    provider: str | None = None
    resource: str | None = None
    purpose: str | None = None
    record_count: int = 0
    categories: tuple[str, ...] = ()
    dropped: Mapping[str, int] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()
    trace_id: str | None = None
    trace_summary: Mapping[str, JSONValue] = field(default_factory=dict)

    def __init__(
        self,
        *,
        customer_id: str,
        action: Action,
        outcome: Outcome,
        problem_type: str | None = None,
        caller_id: str | None = None,
        caller_class: str | None = None,
        connection_id: str | None = None,
        provider: str | None = None,
        resource: str | None = None,
        purpose: str | None = None,
        record_count: int = 0,
        categories: tuple[str, ...] = (),
        dropped: Mapping[str, int] = _NOTHING_DROPPED,
        subjects: tuple[str, ...] = (),
        trace_id: str | None = None,
        trace_summary: Mapping[str, JSONValue] = _NO_SUMMARY,
    ) -> None:
        values: dict[str, Any] = {
            "customer_id": customer_id,
            "action": action,
            "outcome": outcome,
            "problem_type": problem_type,
            "caller_id": caller_id,
            "caller_class": caller_class,
            "connection_id": connection_id,
            "provider": provider,
            "resource": resource,
            "purpose": purpose,
            "record_count": record_count,
            "categories": categories,
            "dropped": dropped,
            "subjects": subjects,
            "trace_id": trace_id,
            "trace_summary": trace_summary,
        }
        _normalize(values)
        # Past the frozen __setattr__, as the generated __init__ goes past it.
        self.__dict__.update(values)

    def __post_init__(self) -> None:
        # Only a subclass's generated __init__ calls this: its fields are already
        # in the instance dict, normalized there in place.
        _normalize(self.__dict__)


def _normalize(values: dict[str, Any]) -> None:
    """Check a draft's field values and normalize them in place (``ValueError`` if invalid).

    Normalized so that two drafts meaning the same thing serialize to the same
    bytes: ``action`` and ``outcome`` as members, categories and subjects sorted
    and deduplicated, ``dropped`` a plain dict sorted by rule without zero
    counts, ``trace_summary`` a plain dict.
    """
    if not values["customer_id"]:
        raise ValueError("customer_id is required")
    # A member converts to itself: only other values go through the enum's lookup.
    action = values["action"]
    if action.__class__ is not Action:
        values["action"] = Action(action)
    outcome = values["outcome"]
    if outcome.__class__ is not Outcome:
        values["outcome"] = outcome = Outcome(outcome)
    if outcome is Outcome.ALLOWED and values["problem_type"] is not None:
        raise ValueError("an allowed event has no problem_type")
    record_count = values["record_count"]
    if isinstance(record_count, bool) or record_count < 0:
        raise ValueError("record_count must be a non-negative integer")
    values["categories"] = _sorted_unique(values["categories"], "categories")
    subjects = _sorted_unique(values["subjects"], "subjects")
    # A clear identifier must never reach the log (privacy notice,
    # "accountable"): only keyed hashes from gateway.audit.subjects. All of
    # them checked in one regex pass over the NUL-joined list (a NUL inside
    # a subject shows in the count); one match per subject cost 13 times
    # the per-call overhead.
    joined = "\0".join(subjects)
    if subjects and (
        joined.count("\0") != len(subjects) - 1 or not _SUBJECT_HASHES.fullmatch(joined)
    ):
        raise ValueError("subjects must be keyed hashes, not identifiers")
    values["subjects"] = subjects
    dropped: dict[str, int] = {}
    for rule_id, count in values["dropped"].items():
        if not isinstance(rule_id, str) or not rule_id:
            raise ValueError("dropped keys are rule ids")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"dropped[{rule_id!r}] must be a non-negative integer")
        if count:
            dropped[rule_id] = count
    values["dropped"] = dict(sorted(dropped.items()))
    summary = dict(values["trace_summary"])
    _check_json(summary, budget=MAX_TRACE_SUMMARY_ITEMS)
    values["trace_summary"] = summary


@dataclass(frozen=True, kw_only=True)
class AuditEvent(EventDraft):
    """A draft with its place in the customer's chain.

    ``seq`` counts from 1 per customer without gaps; ``hash`` covers the
    canonical content and ``prev_hash`` (see :func:`gateway.audit.chain.link`).
    """

    seq: int
    occurred_at: datetime
    prev_hash: str
    hash: str

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_place()

    @classmethod
    def from_draft(
        cls,
        draft: EventDraft,
        *,
        seq: int,
        occurred_at: datetime,
        prev_hash: str,
        hash: str,
    ) -> AuditEvent:
        """``draft`` placed in a chain. A draft is valid by construction, so only the
        place is checked (this is the append hot path: no second validation)."""
        event = object.__new__(cls)
        # The instance dicts directly (neither class has __slots__): one copy in C
        # rather than twenty frozen-dataclass setattr calls (about 53,000 -> 5,000
        # instructions under callgrind).
        fields_ = event.__dict__
        fields_.update(draft.__dict__)
        fields_["seq"] = seq
        fields_["occurred_at"] = occurred_at
        fields_["prev_hash"] = prev_hash
        fields_["hash"] = hash
        event._check_place()
        return event

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> AuditEvent:
        """An event from a value for every field (``ValueError`` if invalid), checked and
        normalized as the constructor checks them.

        For reading events back (:func:`gateway.audit.chain.decode_event`): the
        generated ``__init__`` sets each of the twenty fields through
        ``object.__setattr__`` before :meth:`__post_init__` runs the checks;
        here one dict update fills the instance dict and the same
        :meth:`__post_init__` runs. ``values`` must hold exactly the fields.
        """
        event = object.__new__(cls)
        event.__dict__.update(values)
        event.__post_init__()
        return event

    def _check_place(self) -> None:
        if self.seq < 1:
            raise ValueError("seq counts from 1")
        offset = self.occurred_at.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError("occurred_at must be an aware UTC datetime")

    @property
    def draft(self) -> EventDraft:
        """The draft this event was linked from."""
        return EventDraft(**{n: getattr(self, n) for n in _DRAFT_NAMES})


_DRAFT_NAMES = tuple(f.name for f in fields(EventDraft))


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A draft written to the audit outbox by the transaction that made its change.

    ``id`` names the outbox row (the chain never sees it); ``written_at`` is
    when that transaction wrote it, the time the event keeps in the chain
    unless the chain has already moved past it (see
    :meth:`gateway.audit.store.AuditStore.append_outboxed`).
    """

    id: str
    draft: EventDraft
    written_at: datetime


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits: one instant, one string.

    The string is hashed into every event, so it must never change: it is
    ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")``. ``isoformat`` writes the same
    characters about six times faster, except that it zero-pads years before
    1000 where ``%Y`` may not; those (no event's) keep ``strftime``.
    """
    utc = moment.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`: ``strptime("%Y-%m-%dT%H:%M:%S.%fZ")``.

    Verifying a chain parses every event's time, and ``strptime`` was a quarter
    of it. A string of exactly the written shape goes through ``fromisoformat``
    (several times faster, and for such a string the same instant); anything
    else, or anything ``fromisoformat`` refuses, gets ``strptime``'s verdict.
    """
    if len(text) == 27 and text[26] == "Z" and text[10] == "T" and text[19] == ".":
        try:
            return datetime.fromisoformat(text[:26]).replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _sorted_unique(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(f"{what} is a sequence of strings, not one string")
    out = sorted(set(values))
    if any(not isinstance(v, str) or not v for v in out):
        raise ValueError(f"{what} must be non-empty strings")
    return tuple(out)


def _check_json(value: object, *, budget: int) -> None:
    # Iterative, with an exact-type test first: the summary is a few dozen plain
    # values, and a recursive call with an isinstance chain per value cost more
    # than the values (about 58,000 instructions per records event).
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(f"trace_summary has more than {MAX_TRACE_SUMMARY_ITEMS} items")
        if type(item) in _JSON_SCALARS:
            continue
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise ValueError("trace_summary keys are strings")
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, float):
            raise ValueError("trace_summary holds integers, not floats (durations in µs)")
        elif not isinstance(item, (str, int)):  # subclasses (a StrEnum) serialize as values
            raise ValueError(f"trace_summary cannot hold {type(item).__name__}")


_JSON_SCALARS = frozenset({str, int, bool, type(None)})
