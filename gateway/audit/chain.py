"""The per-customer hash chain: canonical bytes, linking, verification.

Sans-I/O: plain functions over :class:`~gateway.audit.event.AuditEvent` values;
the store feeds rows in and the tests feed tampered lists in.

What this follows, and where it departs:

* **AWS CloudTrail log file integrity validation** (CloudTrail User Guide,
  "Validating CloudTrail log file integrity" and "CloudTrail digest file
  structure"): every digest carries the hash and signature of the previous
  one, so deleting, reordering or inserting a digest breaks the chain. Here
  the same idea is applied one level down, per event: ``hash = SHA-256(prefix
  || prev_hash || canonical content)``, with a per-customer genesis value in
  place of CloudTrail's "first digest has null previous" rule so that two
  customers' chains can never be spliced together. The signed digests
  themselves are :mod:`gateway.audit.checkpoint`.
* **Canonical JSON** is modeled on RFC 8785 (JCS): sorted keys, no
  insignificant whitespace, UTF-8. Content is restricted to strings, integers,
  booleans, null, lists and objects (no floats, see :mod:`gateway.audit.event`),
  for which Python's ``json`` with ``sort_keys`` produces JCS bytes for
  ASCII keys. Those bytes are the definition; orjson writes the same ones
  faster (see :func:`canonical_content`).
* **Domain separation** (a fixed, versioned prefix before hashed content, as
  RFC 6962 §2.1 prefixes leaves with 0x00 and nodes with 0x01): ``CHAIN_PREFIX``
  names the scheme and version, so a future ``v2`` can never collide with a
  ``v1`` hash and no other hash in the system (checkpoints, subjects) can be
  replayed as an event hash.

Checkpoints (signed chain heads) anchor the chain: the hash chain alone shows
that rows were changed, removed, reordered or inserted *unless* whoever did it
also rewrote every later hash; a signature made with a key that lives outside
the database is what such a rewrite cannot reproduce. :class:`ChainVerifier`
checks both, and also lets a chain start after a checkpoint (retention pruning
removes events only up to a checkpoint, whose seq and hash become the anchor).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.audit.checkpoint import Checkpoint, CheckpointKeys
from gateway.audit.event import (
    Action,
    AuditEvent,
    EventDraft,
    Outcome,
    format_time,
    parse_time,
)

__all__ = [
    "CHAIN_PREFIX",
    "ChainVerifier",
    "VerifyResult",
    "canonical_content",
    "decode_canonical",
    "decode_event",
    "event_hash",
    "genesis_hash",
    "link",
    "link_with_content",
    "verify_chain",
]

CHAIN_PREFIX = b"linkgate.audit.event.v1\n"
GENESIS_PREFIX = b"linkgate.audit.genesis.v1\n"

_CONTENT_FIELDS = (
    "customer_id",
    "seq",
    "occurred_at",
    "action",
    "outcome",
    "problem_type",
    "caller_id",
    "caller_class",
    "connection_id",
    "provider",
    "resource",
    "purpose",
    "record_count",
    "categories",
    "dropped",
    "subjects",
    "trace_id",
    "trace_summary",
)
_FIELD_SET = frozenset(_CONTENT_FIELDS)


def genesis_hash(customer_id: str) -> str:
    """The ``prev_hash`` of a customer's first event."""
    return hashlib.sha256(GENESIS_PREFIX + customer_id.encode("utf-8")).hexdigest()


# Every event of one customer in one appended batch shares one datetime object
# (see ChainAppender._link in gateway.audit.append), so the text of the last one is kept and a batch
# formats it once: format_time costs about 20,000 instructions under callgrind,
# this check a few hundred. A datetime is immutable: the same object always
# has the same text. One (object, text) pair, swapped whole, so any thread
# reads a matching pair.
_last_time: tuple[datetime | None, str] = (None, "")


def _time_text(moment: datetime) -> str:
    global _last_time  # a one-entry cache, see above
    last_moment, text = _last_time
    if moment is not last_moment:
        text = format_time(moment)
        _last_time = (moment, text)
    return text


def _content(event: AuditEvent) -> dict[str, Any]:
    # An event's values are already JSON's (the draft normalized them: tuples,
    # plain dicts, StrEnum members, which both encoders write as arrays,
    # objects and strings), so only the time needs its text. The instance dict
    # (the dataclass has no slots) holds exactly the content fields and the two
    # hashes: one copy in C instead of eighteen getattr calls; the encoders sort
    # the keys.
    out = event.__dict__.copy()
    del out["prev_hash"], out["hash"]
    out["occurred_at"] = _time_text(event.occurred_at)
    return out


# The definition of the canonical bytes: what ``json.dumps`` with these
# arguments writes, UTF-8 encoded. One encoder, built once (it holds no state
# between calls). The bytes are persisted and verified, so they must never change.
_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
)


def _canonical_json(content: dict[str, Any]) -> bytes:
    return _CANONICAL_JSON.encode(content).encode("utf-8")


def canonical_content(event: AuditEvent) -> bytes:
    """The bytes the event hash covers (everything but ``prev_hash`` and ``hash``).

    orjson with sorted keys writes exactly :data:`_CANONICAL_JSON`'s bytes for
    an event's values (every code point, as key or value, and every 64-bit
    integer checked in tests/audit/test_audit_chain.py) in about a tenth of the
    instructions (~114,000 -> ~10,000 per records event under callgrind). What
    orjson refuses (an integer past 64 bits, nesting past 255 levels, a lone
    surrogate) goes through the defining encoder, which then writes its bytes
    or raises as it always did.
    """
    content = _content(event)
    try:
        return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _canonical_json(content)


def event_hash(prev_hash: str, content: bytes) -> str:
    """``SHA-256(CHAIN_PREFIX || prev_hash bytes || content)``, hex."""
    return hashlib.sha256(CHAIN_PREFIX + bytes.fromhex(prev_hash) + content).hexdigest()


def link(draft: EventDraft, seq: int, prev_hash: str, occurred_at: datetime) -> AuditEvent:
    """Give ``draft`` its place after ``prev_hash``; the result carries its hash."""
    return link_with_content(draft, seq, prev_hash, occurred_at)[0]


def link_with_content(
    draft: EventDraft, seq: int, prev_hash: str, occurred_at: datetime
) -> tuple[AuditEvent, bytes]:
    """:func:`link`, also returning the canonical content it hashed (what the store keeps)."""
    unhashed = AuditEvent.from_draft(
        draft, seq=seq, occurred_at=occurred_at.astimezone(UTC), prev_hash=prev_hash, hash=""
    )
    content = canonical_content(unhashed)
    return _with_hash(unhashed, event_hash(prev_hash, content)), content


def decode_event(content: str | bytes, *, prev_hash: str, hash: str) -> AuditEvent:
    """Rebuild an event from its stored canonical content and hashes.

    Raises ``ValueError`` when the content is not an event (a tampered row).
    """
    return _event_from(json.loads(content), prev_hash, hash)


def decode_canonical(content: str, *, prev_hash: str, hash: str) -> tuple[AuditEvent, bytes]:
    """:func:`decode_event`'s event and its :func:`canonical_content`, read faster when
    ``content`` is already canonical (as every appended row's is).

    Verification decodes every event of a chain and hashes its canonical
    content. orjson reads the text in about half the time ``json.loads``
    takes, but reads some texts differently (an integer past 64 bits becomes
    a float, a lone surrogate is refused; see gateway/upstream/_json_text.py).
    Its reading is kept only when the event it gives writes back exactly the
    stored text: such a text holds nothing the two read differently, so it is
    :func:`decode_event`'s event, and those bytes are what the hash covers.
    Any other text (a tampered row, a legitimate integer past 64 bits) is
    decoded by :func:`decode_event`, which gives the verdict it always gave.
    """
    raw = content.encode("utf-8")
    try:
        event = _event_from(orjson.loads(raw), prev_hash, hash)
    except (ValueError, TypeError, KeyError, AttributeError):
        pass  # decode_event below decides (and raises what it always raised)
    else:
        canonical = canonical_content(event)
        if canonical == raw:
            return event, canonical
    event = decode_event(content, prev_hash=prev_hash, hash=hash)
    return event, canonical_content(event)


def _event_from(data: Any, prev_hash: str, hash: str) -> AuditEvent:
    """The event ``data`` (parsed content) describes; ``ValueError`` for anything else.

    A tampered row can hold any JSON: a field of another type (a list for
    ``dropped``, a number for ``subjects``) fails inside the checks as a
    ``TypeError`` or ``AttributeError``. Each is turned into the ``ValueError``
    that every reader (verification, search, export) treats as "not an event",
    so none of them answers a tampered row with a crash.
    """
    if not isinstance(data, dict) or data.keys() != _FIELD_SET:
        raise ValueError("content does not have the event's fields")
    try:
        data["occurred_at"] = parse_time(data["occurred_at"])
        data["action"] = Action(data["action"])
        data["outcome"] = Outcome(data["outcome"])
        data["categories"] = tuple(data["categories"])
        data["subjects"] = tuple(data["subjects"])
        data["prev_hash"] = prev_hash
        data["hash"] = hash
        return AuditEvent.from_fields(data)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"a field of the content has the wrong type ({exc})") from exc


def _with_hash(event: AuditEvent, digest: str) -> AuditEvent:
    object.__setattr__(event, "hash", digest)
    return event


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What verification found. ``problem`` is empty when ``ok``.

    ``head_seq``/``head_hash`` are the last event that verified (or the anchor
    when none did); ``first_bad_seq`` is the lowest sequence number at which
    the log stops being what was written.
    """

    ok: bool
    events_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class _Finding:
    seq: int
    problem: str


class ChainVerifier:
    """Streaming verification of one customer's chain against its checkpoints.

    Feed events in ascending ``seq`` order with :meth:`add` (or
    :meth:`add_unreadable` for a row that did not decode), then call
    :meth:`finish`. Memory stays constant in the number of events.
    """

    def __init__(
        self,
        customer_id: str,
        checkpoints: Iterable[Checkpoint],
        keys: CheckpointKeys,
        *,
        head: tuple[int, str] | None = None,
    ) -> None:
        self.customer_id = customer_id
        self._head = head
        self._findings: list[_Finding] = []
        self._event_finding: _Finding | None = None
        self._checkpoints: dict[int, Checkpoint] = {}
        self._check_checkpoints(sorted(checkpoints, key=lambda c: c.seq), keys)
        self._seq = 0
        self._hash = genesis_hash(customer_id)
        self._time: datetime | None = None
        self._started = False
        self._checked = 0

    def _check_checkpoints(self, checkpoints: Sequence[Checkpoint], keys: CheckpointKeys) -> None:
        # The checkpoints form their own chain, as CloudTrail digests do: each
        # names the hash of the one before, so removing one is visible too.
        previous = None
        for checkpoint in checkpoints:
            if checkpoint.customer_id != self.customer_id:
                self._flag(checkpoint.seq, f"checkpoint at seq {checkpoint.seq} is for another log")
                continue
            problem = keys.problem(checkpoint)
            if problem:
                self._flag(checkpoint.seq, f"checkpoint at seq {checkpoint.seq}: {problem}")
                continue
            expected_prev = previous.hash if previous else Checkpoint.GENESIS
            if checkpoint.prev_checkpoint_hash != expected_prev:
                self._flag(
                    checkpoint.seq,
                    f"checkpoint at seq {checkpoint.seq} does not follow the previous checkpoint",
                )
            elif previous and checkpoint.seq < previous.seq:
                self._flag(checkpoint.seq, f"checkpoint at seq {checkpoint.seq} goes backwards")
            self._checkpoints[checkpoint.seq] = checkpoint
            previous = checkpoint

    def _flag(self, seq: int, problem: str) -> None:
        self._findings.append(_Finding(seq, problem))

    def flag(self, seq: int, problem: str) -> None:
        """Record a problem found outside the chain itself (a stored copy that disagrees)."""
        self._flag(seq, problem)

    @property
    def failed(self) -> bool:
        """Whether the chain already broke (later events cannot change the verdict)."""
        return self._event_finding is not None

    def _fail_event(self, seq: int, problem: str) -> None:
        if self._event_finding is None:
            self._event_finding = _Finding(seq, problem)

    def _start(self, first_seq: int) -> bool:
        self._started = True
        if first_seq == 1:
            return True
        anchor = self._checkpoints.get(first_seq - 1)
        if anchor is None:
            below = [seq for seq in self._checkpoints if seq < first_seq]
            self._fail_event(
                max(below, default=0) + 1,
                f"log starts at seq {first_seq} with no checkpoint at seq {first_seq - 1}",
            )
            return False
        self._seq, self._hash = anchor.seq, anchor.head_hash
        return True

    def add(self, event: AuditEvent, content: bytes | None = None) -> None:
        """Check the next event of the chain; ``content``: its :func:`canonical_content`,
        when the caller has it already (:func:`decode_canonical`)."""
        if self._event_finding is not None:
            return
        if not self._started and not self._start(event.seq):
            return
        expected = self._seq + 1
        if event.customer_id != self.customer_id:
            self._fail_event(event.seq, f"event {event.seq} belongs to another customer")
        elif event.seq > expected:
            self._fail_event(expected, f"event {expected} is missing (next is {event.seq})")
        elif event.seq < expected:
            self._fail_event(
                event.seq, f"event {event.seq} appears again or out of order after {self._seq}"
            )
        elif event.prev_hash != self._hash:
            self._fail_event(event.seq, f"event {event.seq} does not link to event {self._seq}")
        elif event_hash(event.prev_hash, content or canonical_content(event)) != event.hash:
            self._fail_event(event.seq, f"event {event.seq} was altered (hash mismatch)")
        elif self._time is not None and event.occurred_at < self._time:
            self._fail_event(event.seq, f"event {event.seq} is older than event {self._seq}")
        else:
            checkpoint = self._checkpoints.get(event.seq)
            if checkpoint is not None and checkpoint.head_hash != event.hash:
                # The links hold, so everything since the previous checkpoint
                # was rewritten consistently; none of it can be trusted.
                since = max((s for s in self._checkpoints if s < event.seq), default=0) + 1
                self._fail_event(
                    since,
                    f"events {since}..{event.seq} were rewritten: event {event.seq} "
                    "differs from the signed checkpoint at it",
                )
                return
            self._seq, self._hash, self._time = event.seq, event.hash, event.occurred_at
            self._checked += 1

    def add_unreadable(self, seq: int, reason: str) -> None:
        """Record that the row at ``seq`` could not be decoded into an event."""
        if self._event_finding is None and not self._started:
            self._start(seq)
        if self._event_finding is None:
            if seq > self._seq + 1:
                self._fail_event(self._seq + 1, f"event {self._seq + 1} is missing (next is {seq})")
            else:
                self._fail_event(seq, f"event {seq} is unreadable: {reason}")

    def _check_head(self, head_seq: int, head_hash: str) -> None:
        reached = self._seq
        if head_seq > reached:
            self._fail_event(
                reached + 1, f"log ends at seq {reached} but its head records seq {head_seq}"
            )
        elif head_seq < reached:
            self._fail_event(head_seq + 1, f"events follow the recorded head at seq {head_seq}")
        else:
            self._fail_event(reached, f"event {reached} differs from the recorded head")

    def finish(self, *, complete: bool = True) -> VerifyResult:
        """The verdict: the lowest-seq problem found, if any.

        ``complete=False`` checks a prefix of the chain: it skips the checks
        that the log reaches its head and its newest checkpoint.
        """
        if self._event_finding is None and complete:
            if not self._started and self._checkpoints:
                # Everything was pruned: the newest checkpoint is the head.
                last = self._checkpoints[max(self._checkpoints)]
                self._seq, self._hash = last.seq, last.head_hash
            reached = self._seq
            beyond = [seq for seq in self._checkpoints if seq > reached]
            if beyond:
                self._fail_event(
                    reached + 1,
                    f"log ends at seq {reached} but a checkpoint commits to seq {min(beyond)}",
                )
            elif self._head is not None and self._head != (self._seq, self._hash):
                self._check_head(*self._head)
        # On a tie the chain's own finding names the problem better than a stored copy's.
        findings = [self._event_finding] if self._event_finding else []
        findings += self._findings
        if not findings:
            return VerifyResult(True, self._checked, self._seq, self._hash)
        worst = min(findings, key=lambda f: f.seq)
        return VerifyResult(False, self._checked, self._seq, self._hash, worst.seq, worst.problem)


def verify_chain(
    events: Iterable[AuditEvent],
    checkpoints: Iterable[Checkpoint],
    keys: CheckpointKeys,
    *,
    customer_id: str | None = None,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Verify one customer's events (ascending ``seq``) and checkpoints.

    ``customer_id`` defaults to the first event's (or checkpoint's) customer;
    ``head`` is the stored ``(seq, hash)`` of the chain head, when known.
    """
    events = iter(events)
    checkpoints = list(checkpoints)
    first = next(events, None)
    if customer_id is None:
        if first is not None:
            customer_id = first.customer_id
        elif checkpoints:
            customer_id = checkpoints[0].customer_id
        else:
            return VerifyResult(True, 0, 0, "")
    verifier = ChainVerifier(customer_id, checkpoints, keys, head=head)
    if first is not None:
        verifier.add(first)
    for event in events:
        verifier.add(event)
    return verifier.finish()
