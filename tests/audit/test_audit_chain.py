"""The hash chain without a database: linking, canonical bytes, and each kind of tampering."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    Action,
    AuditEvent,
    Checkpoint,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    Outcome,
    canonical_content,
    decode_event,
    genesis_hash,
    link,
    verify_chain,
)
from gateway.audit.chain import _content, decode_canonical

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

Chain = tuple[list[AuditEvent], list[Checkpoint]]


def build_chain(
    make_draft: Callable[..., EventDraft],
    signer: CheckpointSigner,
    n: int = 10,
    checkpoint_at: tuple[int, ...] = (5, 10),
) -> Chain:
    events: list[AuditEvent] = []
    checkpoints: list[Checkpoint] = []
    prev = genesis_hash("acme")
    for seq in range(1, n + 1):
        event = link(make_draft(record_count=seq), seq, prev, T0 + timedelta(seconds=seq))
        events.append(event)
        prev = event.hash
        if seq in checkpoint_at:
            checkpoints.append(
                signer.sign(
                    "acme",
                    seq,
                    event.hash,
                    T0 + timedelta(seconds=seq, milliseconds=1),
                    checkpoints[-1].hash if checkpoints else Checkpoint.GENESIS,
                )
            )
    return events, checkpoints


@pytest.fixture
def chain(make_draft: Callable[..., EventDraft], signer: CheckpointSigner) -> Chain:
    return build_chain(make_draft, signer)


def relink(events: list[AuditEvent], start: int) -> list[AuditEvent]:
    """What an attacker who knows the scheme does: recompute every hash from ``start`` on."""
    out = list(events[:start])
    prev = out[-1].hash if out else genesis_hash("acme")
    for i, event in enumerate(events[start:], start=start + 1):
        relinked = link(event.draft, i, prev, event.occurred_at)
        out.append(relinked)
        prev = relinked.hash
    return out


def test_intact_chain_verifies(chain: Chain, keys: CheckpointKeys) -> None:
    """An untouched chain with its checkpoints verifies to its head."""
    events, checkpoints = chain
    result = verify_chain(events, checkpoints, keys)
    assert (True, 10, 10, events[-1].hash, None, "") == (
        result.ok,
        result.events_checked,
        result.head_seq,
        result.head_hash,
        result.first_bad_seq,
        result.problem,
    )


def test_canonical_content_is_stable(make_draft: Callable[..., EventDraft]) -> None:
    """The hashed bytes are sorted, compact JSON; the hash of a fixed event never changes."""
    draft = make_draft(trace_summary={"retries": 0}, dropped={}, categories=("b", "a"))
    event = link(draft, 1, genesis_hash("acme"), T0)
    content = canonical_content(event)
    assert content.startswith(b'{"action":"records.read","caller_class":"internal",')
    assert b" " not in content
    assert b'"categories":["a","b"]' in content
    assert b'"occurred_at":"2026-01-02T03:04:05.678901Z"' in content
    assert event.hash == "86c6e60e16b4a3e37e0280ffabfeee0d0d48d6e8ece6a1a5540f0485c0c39acb"


def _stdlib_canonical(event: AuditEvent) -> bytes:
    """The definition of the canonical bytes: ``json.dumps`` sorted, compact, UTF-8."""
    return json.dumps(
        _content(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_EDGE_POINTS = (
    *range(0x00, 0x80),
    0x80,
    0x9F,
    0xA0,
    0xFF,
    0x7FF,
    0x800,
    0x2028,
    0x2029,
    0xD7FF,
    0xE000,
    0xFEFF,
    0xFFFD,
    0xFFFF,
    0x10000,
    0x1F600,
    0x10FFFF,
)


def test_canonical_bytes_are_stdlib_json_for_every_code_point(
    make_draft: Callable[..., EventDraft],
) -> None:
    """Every code point, in a value and as a sorted key, encodes as ``json.dumps`` writes it."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    keys = {f"k{chr(c)}": c for c in _EDGE_POINTS} | {chr(c): c for c in _EDGE_POINTS}
    summary = {"text": every, "keys": keys, "z": [every[::-1], "\x00\t\n\x7f"]}
    event = link(make_draft(trace_summary=summary), 1, genesis_hash("acme"), T0)
    assert _stdlib_canonical(event) == canonical_content(event)


@pytest.mark.parametrize(
    "number", [0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 2**64, -(2**63) - 1]
)
def test_canonical_bytes_are_stdlib_json_for_any_integer(
    make_draft: Callable[..., EventDraft], number: int
) -> None:
    """Integers, inside and past 64 bits, encode as ``json.dumps`` writes them."""
    event = link(make_draft(trace_summary={"n": number}), 1, genesis_hash("acme"), T0)
    assert _stdlib_canonical(event) == canonical_content(event)


def test_canonical_bytes_of_deep_nesting_are_stdlib_json(
    make_draft: Callable[..., EventDraft],
) -> None:
    """Nesting deeper than orjson writes still encodes as ``json.dumps`` writes it."""
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    event = link(make_draft(trace_summary={"deep": deep}), 1, genesis_hash("acme"), T0)
    assert _stdlib_canonical(event) == canonical_content(event)


def test_lone_surrogate_cannot_be_hashed(make_draft: Callable[..., EventDraft]) -> None:
    """Text that is not Unicode has no UTF-8 bytes: linking it fails as it always did."""
    with pytest.raises(UnicodeEncodeError):
        link(make_draft(purpose="x\ud800"), 1, genesis_hash("acme"), T0)


def test_decode_round_trips(chain: Chain) -> None:
    """Stored content decodes to the same event."""
    events, _ = chain
    event = events[3]
    assert event == decode_event(
        canonical_content(event), prev_hash=event.prev_hash, hash=event.hash
    )


def canonical_content_text(content: dict[str, Any]) -> str:
    """The canonical text, as ``json.dumps`` defines it."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _as_stored(event: AuditEvent, rewrite: Callable[[dict[str, Any]], str]) -> str:
    return rewrite(json.loads(canonical_content(event)))


@pytest.mark.parametrize(
    ("fields", "rewrite"),
    [
        pytest.param({}, canonical_content_text, id="canonical"),
        pytest.param({"record_count": 2**70}, canonical_content_text, id="count-past-64-bits"),
        pytest.param(
            {"trace_summary": {"n": -(2**64)}},
            canonical_content_text,
            id="summary-integer-past-64-bits",
        ),
        pytest.param({}, lambda c: json.dumps(c), id="spaces-and-escapes"),
        pytest.param({}, lambda c: json.dumps(dict(reversed(c.items()))), id="keys-unsorted"),
        pytest.param(
            {"trace_summary": {"deep": [[[[1]]]]}},
            lambda c: json.dumps(c, indent=1),
            id="indented",
        ),
    ],
)
def test_decode_canonical_reads_what_decode_event_reads(
    make_draft: Callable[..., EventDraft],
    fields: dict[str, Any],
    rewrite: Callable[[dict[str, Any]], str],
) -> None:
    """The faster reading verification uses gives :func:`decode_event`'s event and its
    canonical bytes for stored text of any form, canonical or not, including integers
    that orjson alone would read as floats (a record count past 64 bits)."""
    event = link(make_draft(**fields), 1, genesis_hash("acme"), T0)
    stored = _as_stored(event, rewrite)
    expected = decode_event(stored, prev_hash=event.prev_hash, hash=event.hash)
    fast = decode_canonical(stored, prev_hash=event.prev_hash, hash=event.hash)
    assert fast == (expected, canonical_content(expected))
    assert fast[0] == event


NOT_AN_EVENT = "content does not have the event's fields"


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        pytest.param("[]", NOT_AN_EVENT, id="not-an-object"),
        pytest.param('{"seq": 1}', NOT_AN_EVENT, id="missing-fields"),
        pytest.param("NaN", NOT_AN_EVENT, id="nan"),
        pytest.param("{", "Expecting property name", id="not-json"),
    ],
)
def test_decode_canonical_refuses_what_decode_event_refuses(stored: str, message: str) -> None:
    """Text that is not an event raises the error :func:`decode_event` raises."""
    with pytest.raises(ValueError, match=message) as slow:
        decode_event(stored, prev_hash="0" * 64, hash="0" * 64)
    with pytest.raises(ValueError, match=message) as fast:
        decode_canonical(stored, prev_hash="0" * 64, hash="0" * 64)
    assert (type(fast.value), str(fast.value)) == (type(slow.value), str(slow.value))


def test_changed_byte_is_detected_and_located(chain: Chain, keys: CheckpointKeys) -> None:
    """One changed byte in event 4's stored content breaks the chain at seq 4."""
    events, checkpoints = chain
    content = canonical_content(events[3]).replace(b'"facebook"', b'"facebooc"')
    events[3] = decode_event(content, prev_hash=events[3].prev_hash, hash=events[3].hash)
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq, result.head_seq) == (False, 4, 3)
    assert "altered" in result.problem


def test_deleted_row_is_detected_and_located(chain: Chain, keys: CheckpointKeys) -> None:
    """A deleted event leaves a gap named by its seq."""
    events, checkpoints = chain
    del events[3]
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "missing" in result.problem


def test_deleted_first_row_is_detected(chain: Chain, keys: CheckpointKeys) -> None:
    """A chain that starts after seq 1 with no checkpoint to anchor it fails at seq 1."""
    events, checkpoints = chain
    result = verify_chain(events[1:], checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_swapped_rows_are_detected_and_located(chain: Chain, keys: CheckpointKeys) -> None:
    """Two events in swapped order fail at the first of them."""
    events, checkpoints = chain
    events[3], events[4] = events[4], events[3]
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_swapped_contents_are_detected(chain: Chain, keys: CheckpointKeys) -> None:
    """Two events that traded content but kept their seqs fail at the first of them."""
    events, checkpoints = chain
    a, b = events[3], events[4]
    events[3] = dataclasses.replace(b, seq=4, prev_hash=a.prev_hash, hash=a.hash)
    events[4] = dataclasses.replace(a, seq=5, prev_hash=b.prev_hash, hash=b.hash)
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_inserted_row_is_detected_and_located(
    chain: Chain, keys: CheckpointKeys, make_draft: Callable[..., EventDraft]
) -> None:
    """A well-linked forged event slipped in after event 6 is named at seq 7."""
    events, checkpoints = chain
    forged = link(make_draft(purpose="marketing"), 7, events[5].hash, events[5].occurred_at)
    events.insert(6, forged)
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 7)


def test_rewritten_chain_is_caught_by_checkpoint(
    chain: Chain, keys: CheckpointKeys, make_draft: Callable[..., EventDraft]
) -> None:
    """Inserting at 7 and recomputing every later hash is caught by the checkpoint at 10."""
    events, checkpoints = chain
    forged = dataclasses.replace(events[6], purpose="marketing")
    events = relink([*events[:6], forged, *events[6:]], 6)[:10]
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "rewritten" in result.problem


def test_truncated_tail_after_checkpoint_is_detected(chain: Chain, keys: CheckpointKeys) -> None:
    """Dropping events 8-10 under a checkpoint at 10 fails at seq 8."""
    events, checkpoints = chain
    result = verify_chain(events[:7], checkpoints, keys)
    assert (result.ok, result.first_bad_seq, result.head_seq) == (False, 8, 7)
    assert "checkpoint" in result.problem


def test_truncated_tail_is_detected_by_head(chain: Chain, keys: CheckpointKeys) -> None:
    """Without a checkpoint, the recorded head still shows a truncated tail."""
    events, _ = chain
    result = verify_chain(events[:7], [], keys, head=(10, events[-1].hash))
    assert (result.ok, result.first_bad_seq) == (False, 8)


def test_forged_checkpoint_signature_is_detected(chain: Chain, keys: CheckpointKeys) -> None:
    """A checkpoint whose signature bytes were changed fails at its seq."""
    events, checkpoints = chain
    note = checkpoints[0].note
    text, _, sig_line = note.partition("\n\n")
    name, encoded = sig_line.removeprefix("\u2014 ").split()
    sig = bytearray(base64.b64decode(encoded))
    sig[-1] ^= 1
    forged = f"{text}\n\n\u2014 {name} {base64.b64encode(bytes(sig)).decode()}\n"
    checkpoints[0] = Checkpoint.parse(forged)
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "does not verify" in result.problem


def test_checkpoint_by_unknown_key_is_rejected(
    make_draft: Callable[..., EventDraft], keys: CheckpointKeys
) -> None:
    """A checkpoint signed by a key the verifier does not know fails at its seq."""
    stranger = CheckpointSigner(Ed25519PrivateKey.generate(), name="test.linkgate/audit")
    events, checkpoints = build_chain(make_draft, stranger, checkpoint_at=(6,))
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "known key" in result.problem


def test_removed_checkpoint_breaks_checkpoint_chain(chain: Chain, keys: CheckpointKeys) -> None:
    """Checkpoints chain like CloudTrail digests: dropping the first is visible at the second."""
    events, checkpoints = chain
    result = verify_chain(events, checkpoints[1:], keys)
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_chain_may_start_after_a_checkpoint(chain: Chain, keys: CheckpointKeys) -> None:
    """After pruning up to the checkpoint at 5, events 6-10 verify against it."""
    events, checkpoints = chain
    result = verify_chain(events[5:], checkpoints, keys)
    assert (result.ok, result.events_checked, result.head_seq) == (True, 5, 10)


def test_fully_pruned_chain_verifies_to_last_checkpoint(chain: Chain, keys: CheckpointKeys) -> None:
    """With every event pruned, the newest checkpoint is the head."""
    events, checkpoints = chain
    result = verify_chain([], checkpoints, keys, customer_id="acme")
    assert (True, 10, events[-1].hash) == (result.ok, result.head_seq, result.head_hash)


def test_chain_starting_between_checkpoints_is_rejected(chain: Chain, keys: CheckpointKeys) -> None:
    """Events deleted up to seq 6 (not a checkpoint) fail at 6."""
    events, checkpoints = chain
    result = verify_chain(events[6:], checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 6)


def test_event_from_another_customer_is_rejected(
    chain: Chain, keys: CheckpointKeys, make_draft: Callable[..., EventDraft]
) -> None:
    """An event of another customer's chain spliced in is located."""
    events, checkpoints = chain
    other = link(make_draft("globex"), 4, events[2].hash, events[2].occurred_at)
    events[3] = other
    result = verify_chain(events, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_time_never_runs_backwards(
    chain: Chain, keys: CheckpointKeys, make_draft: Callable[..., EventDraft]
) -> None:
    """An event dated before its predecessor is flagged even when its links hold."""
    events, _ = chain
    events = relink([*events[:4], dataclasses.replace(events[4], occurred_at=T0)], 4)
    result = verify_chain(events, [], keys)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_empty_log_verifies() -> None:
    """A customer with no events and no checkpoints is trivially intact."""
    result = verify_chain([], [], CheckpointKeys(), customer_id="acme", head=None)
    assert (result.ok, result.events_checked, result.head_seq) == (True, 0, 0)


def test_link_keeps_draft_fields(make_draft: Callable[..., EventDraft]) -> None:
    """Linking adds place and hash; the draft comes back unchanged."""
    draft = make_draft(
        action=Action.CALLER_REFUSED, outcome=Outcome.DENIED, problem_type="forbidden"
    )
    event = link(draft, 1, genesis_hash("acme"), T0)
    assert draft == event.draft
