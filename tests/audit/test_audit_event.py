"""Audit event values: normalization and the refusals that keep the log clean."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import Action, AuditEvent, EventDraft, Outcome, format_time, parse_time

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


@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_parse_time_reads_back_what_format_time_wrote(moment: datetime) -> None:
    """Every event time written comes back as the same instant (years before 1000, no
    event's, are written unpadded by strftime and never could be read back)."""
    assert moment == parse_time(format_time(moment))


_TIME_CHARS = st.sampled_from("0123456789-:T.Z +٣")


@given(
    st.one_of(
        st.builds(
            lambda t, k, c: t[:k] + c + t[k + 1 :],
            st.datetimes(timezones=st.just(UTC)).map(format_time),
            st.integers(0, 26),
            _TIME_CHARS,
        ),
        st.text(_TIME_CHARS, min_size=20, max_size=30),
    )
)
def test_parse_time_accepts_and_refuses_what_strptime_does(text: str) -> None:
    """The fast path changes no verdict: same instant, or ValueError, as strptime's."""
    try:
        expected: datetime | None = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):  # noqa: PT011 - strptime's own refusal
            parse_time(text)
    else:
        assert expected.replace(tzinfo=UTC) == parse_time(text)


def test_the_written_out_init_takes_the_fields_with_their_defaults() -> None:
    """EventDraft's own __init__ takes exactly its fields, keyword-only, with the same defaults."""
    expected = [
        (f.name, f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(EventDraft)
    ]
    expected = [
        (name, inspect.Parameter.empty if d is dataclasses.MISSING else d) for name, d in expected
    ]
    parameters = list(inspect.signature(EventDraft).parameters.values())
    assert {inspect.Parameter.KEYWORD_ONLY} == {p.kind for p in parameters}
    # An empty mapping stands for default_factory=dict: the draft keeps a dict of its own.
    actual = [
        (p.name, dict(p.default) if isinstance(p.default, Mapping) else p.default)
        for p in parameters
    ]
    assert expected == actual


def test_a_draft_stays_frozen(make_draft: MakeDraft) -> None:
    """Assigning a field of a built draft still raises, as a frozen dataclass does."""
    draft = make_draft()
    with pytest.raises(dataclasses.FrozenInstanceError):
        draft.purpose = "marketing"  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(EventDraft)] == list(vars(draft))


_PLACE = {"seq": 1, "occurred_at": datetime(2026, 1, 1, tzinfo=UTC), "prev_hash": "", "hash": ""}
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3))
_SUMMARY = st.recursive(
    _SCALARS | st.floats(allow_nan=False) | st.tuples(st.text(max_size=2)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=8,
)
_HASH_LIKE = st.sampled_from(["hmac-sha256:" + "ab" * 32, "email:" + "0" * 16, "x@y.z", ""])
_DRAFT_FIELDS = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["acme", ""]),
        "action": st.sampled_from([Action.RECORDS_READ, "records.read", "records.write"]),
        "outcome": st.sampled_from([*Outcome, "allowed", "maybe"]),
    },
    optional={
        "problem_type": st.none() | st.just("https://linkgate.dev/problems/forbidden"),
        "caller_id": st.none() | st.text(max_size=3),
        "record_count": st.integers(-1, 3) | st.booleans(),
        "categories": st.lists(st.sampled_from(["b", "a", ""]), max_size=3).map(tuple)
        | st.just("a"),
        "dropped": st.dictionaries(
            st.sampled_from(["rule", "", 1]), st.integers(-1, 2) | st.booleans(), max_size=3
        ),
        "subjects": st.lists(_HASH_LIKE, max_size=3).map(tuple),
        "trace_id": st.none() | st.just("0" * 32),
        "trace_summary": st.dictionaries(st.text(max_size=2), _SUMMARY, max_size=3),
    },
)


def _built(build: Callable[[], object]) -> object:
    """The draft's field values, or the error its construction raised."""
    try:
        built = build()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    return {f.name: getattr(built, f.name) for f in dataclasses.fields(EventDraft)}


@settings(max_examples=400, deadline=None)
@given(_DRAFT_FIELDS)
def test_the_written_out_init_checks_and_normalizes_as_the_generated_one(
    values: dict[str, Any],
) -> None:
    """EventDraft(...) keeps or refuses what a generated dataclass __init__ with the same
    checks (AuditEvent's, ending in EventDraft.__post_init__) keeps or refuses, and the same way."""
    written_out = _built(lambda: EventDraft(**values))
    generated = _built(lambda: AuditEvent(**values, **_PLACE))
    assert generated == written_out
