"""Audit event values: normalization and the refusals that keep the log clean."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.audit import EventDraft, Outcome, format_time

MakeDraft = Callable[..., EventDraft]


def test_draft_normalizes_sets(make_draft: MakeDraft) -> None:
    """Categories are sorted and deduplicated; zero drop counts disappear; dropped is sorted."""
    draft = make_draft(categories=["b", "a", "b"], dropped={"z": 1, "a": 0, "m": 2})
    assert (draft.categories, draft.dropped) == (("a", "b"), {"m": 2, "z": 1})
    assert list(draft.dropped) == ["m", "z"]


def test_clear_identifiers_are_refused(make_draft: MakeDraft) -> None:
    """A subject that is not a keyed hash never reaches the log."""
    with pytest.raises(ValueError, match="keyed hashes"):
        make_draft(subjects=("jane@customer.example",))


_HASH = "hmac-sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "subjects",
    [
        (_HASH + "\n",),  # a trailing newline, which a ^...$ match would let through
        (_HASH + "\0" + _HASH,),  # two hashes smuggled into one subject
        (_HASH, "jane@customer.example"),  # one clear identifier among hashes
    ],
)
def test_every_subject_must_be_exactly_a_keyed_hash(
    make_draft: MakeDraft, subjects: tuple[str, ...]
) -> None:
    """Each subject on its own is a whole keyed hash, however the list is checked."""
    with pytest.raises(ValueError, match="keyed hashes"):
        make_draft(subjects=subjects)


def test_keyed_hashes_are_accepted(make_draft: MakeDraft) -> None:
    """Several well-formed keyed hashes pass, sorted and deduplicated."""
    other = "hmac-sha256:" + "cd" * 32
    assert (_HASH, other) == make_draft(subjects=(other, _HASH, other)).subjects


@pytest.mark.parametrize(
    "summary",
    [{"duration_ms": 1.5}, {"spans": [object()]}, {"spans": list(range(600))}],
)
def test_trace_summary_must_be_small_integer_json(make_draft: MakeDraft, summary: Any) -> None:
    """Floats, non-JSON values and oversized summaries are refused."""
    with pytest.raises(ValueError, match="trace_summary"):
        make_draft(trace_summary=summary)


@pytest.mark.parametrize(
    "summary",
    [
        {"spans": [{"name": "GET", "attributes": {"http.status": 200, "ratio": 0.5}}]},
        {"spans": [{"name": "GET", "attributes": {1: "one"}}]},
        {"spans": [{"name": "GET", "attributes": {"ids": ("a", "b")}}]},
        {"spans": [{"name": "GET"}] * 256},  # 1 + 1 + 256 + 256 names = 514 items
    ],
)
def test_trace_summary_is_checked_at_every_depth(make_draft: MakeDraft, summary: Any) -> None:
    """A float, a non-string key or a tuple deep in a span, or one item too many, is refused."""
    with pytest.raises(ValueError, match="trace_summary"):
        make_draft(trace_summary=summary)


def test_trace_summary_of_plain_values_up_to_the_bound_is_kept(make_draft: MakeDraft) -> None:
    """Exactly 512 items, string subclasses and nested plain values pass unchanged."""
    spans = [{"name": Outcome.ALLOWED, "attributes": {"n": 1, "ok": True, "x": None}}] * 127
    summary = {"spans": spans, "dropped_spans": 0}  # 1 + 2 + 127 * (1 + 2 + 3) = 765
    bounded = {"spans": spans[:85]}  # 1 + 1 + 85 * 6 = 512
    with pytest.raises(ValueError, match="more than 512"):
        make_draft(trace_summary=summary)
    assert bounded == make_draft(trace_summary=bounded).trace_summary


@pytest.mark.parametrize(
    "fields",
    [
        {"customer_id": ""},
        {"record_count": -1},
        {"outcome": "maybe"},
        {"action": "records.write"},
        {"outcome": Outcome.ALLOWED, "problem_type": "forbidden"},
        {"dropped": {"rule": -1}},
        {"categories": "user.contact"},
    ],
)
def test_invalid_drafts_are_refused(make_draft: MakeDraft, fields: dict[str, Any]) -> None:
    """Each malformed field raises ValueError at construction."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make_draft(**fields)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 28, 20, 56, 8, 123456, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-7))),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),
    ],
)
def test_format_time_is_the_hashed_strftime_form(moment: datetime) -> None:
    """Event times are written exactly as the chains already hashed them."""
    assert moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") == format_time(moment)
