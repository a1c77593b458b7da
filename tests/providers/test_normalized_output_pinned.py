"""Every provider's normalized records are pinned: speed work must not change a byte of them.

For each row of the filter table (every built-in provider and resource, with its
fixture pages), the records are normalized twice: from the pages as the fixtures
hold them, and from the same pages after a JSON round trip, as the gateway gets
them from the wire. Odd sandbox items (unreadable identifiers, ids as numbers,
flags that are not booleans) are pinned beside them. Each record is pinned by its
``repr``, which names every field's type and value in order (``True`` is not
``1``), so equal-looking records built differently still fail.

To re-pin after an intended change of the output: ``LINKGATE_REPIN=1 pytest`` this
file, and review the diff of ``normalized_records.json``.

The records service reads pages with ``NormalizeContext.releasable`` set, and then
an item the policy drops by its visibility comes without content; the last tests
hold that reading to these pinned records and to the decisions they get.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from policies import PolicyEngine, Record, Visibility, load_policy
from providers import BUILTIN_PROVIDERS
from providers.base import NormalizeContext
from tests.providers.test_every_provider_filters import TABLE, _context, _records

PINNED = Path(__file__).parent / "normalized_records.json"

# Sandbox items on the edges of what the normalizers read, as the wire could send them.
_ODD_PEOPLE: list[dict[str, Any]] = [
    {"id": "usr_x", "name": "X", "handle": "  ", "email": "no-at-sign"},
    {"id": 42, "name": 7, "handle": "@Mixed.Case", "email": " Two@Example.COM "},
    {"id": "", "handle": "@", "email": "a@b@c", "phone": "(415) 555-0100"},
    {"id": "usr_y", "is_page": 1, "phone": "011 44 20 7946 0958"},
    {"id": "page_z", "is_page": True, "name": "Z"},
    {"id": "usr_t", "age_range": {"max": True}, "birthday": "not-a-date"},
    {"id": "usr_u", "age_range": {"max": 17}, "birthday": "2010-02-03", "phone": "12"},
    {"id": True, "handle": ["a"], "email": None, "phone": 4155550100},
    {},
]
_ODD_POSTS: list[dict[str, Any]] = [
    {
        "id": f"odd_{n}",
        "from": person,
        "message": message,
        "created_time": created,
        "privacy": privacy,
        "is_published": published,
        "place": place,
    }
    for n, (person, message, created, privacy, published, place) in enumerate(
        zip(
            _ODD_PEOPLE,
            ["hi", "", None, ["a", "b"], {"k": 1}, "x", "y", 3, "z"],
            ["2025-03-04T10:00:00+0000", "2025-03-04", "garbage", None, "", 5,
             "2025-03-04T10:00:00.123456Z", "2025-03-04T10:00:00+01:00", "2025-13-01"],
            [{"value": "EVERYONE"}, {"value": 1}, "EVERYONE", None, {"value": "SELF"},
             {"value": "ALL_FRIENDS"}, {}, {"value": "CUSTOM"}, {"value": "EVERYONE"}],
            [True, False, None, 1, 0, "yes", True, True, False],
            [None, {"name": "P", "latitude": 1.5}, [], "", "Somewhere", 0, {}, [1, {"a": None}],
             None],
            strict=True,
        )
    )
]  # fmt: skip
_ODD_ROWS: list[tuple[str, list[dict[str, Any]]]] = [
    ("posts", _ODD_POSTS),
    ("comments", [{**post, "is_hidden": post["is_published"]} for post in _ODD_POSTS]),
    ("conversations", [{"id": "conv_odd", "participants": _ODD_PEOPLE,
                        "messages": [{"from": p, "text": "t"} for p in _ODD_PEOPLE]}]),
    ("events", [{"id": "evt_odd", "event_type": "booking", "attendees": _ODD_PEOPLE,
                 "invitee": {**person, "text_reminder_number": person.get("phone")},
                 "visibility": "public", "start": "2025-03-04T10:00:00Z"}
                for person in _ODD_PEOPLE]),
    ("profile", [{**person, "page": person} for person in _ODD_PEOPLE]),
]  # fmt: skip


def _normalized() -> dict[str, list[str]]:
    return {key: [repr(r) for r in records] for key, records in _pages().items()}


def _pages(releasable: frozenset[Visibility] | None = None) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for provider, resource, files, path in TABLE:
        key = f"{provider} {resource}"
        found[key] = _records(provider, resource, files, path, releasable=releasable)
        found[f"{key} (from JSON)"] = _records(
            provider, resource, files, path, through_json=True, releasable=releasable
        )
    ctx = NormalizeContext(
        customer_id="acme",
        connection_id="con_test",
        provider="sandbox",
        resource="odd",
        fetched_at=datetime.now(UTC),
        releasable=releasable,
    )
    for resource, items in _ODD_ROWS:
        normalize = BUILTIN_PROVIDERS["sandbox"].resources[resource].normalize
        found[f"sandbox {resource} (odd items)"] = [
            normalize(item, ctx) for item in json.loads(json.dumps(items))
        ]
    return found


@functools.cache
def _normalized_once() -> dict[str, list[str]]:
    return _normalized()


def _pinned() -> dict[str, list[str]]:
    if os.environ.get("LINKGATE_REPIN"):
        PINNED.write_text(json.dumps(_normalized(), indent=1, ensure_ascii=False) + "\n")
    pinned: dict[str, list[str]] = json.loads(PINNED.read_text())
    return pinned


@pytest.mark.parametrize("row", sorted(_pinned()))
def test_normalized_records_are_unchanged(row: str) -> None:
    """A fixture page normalizes to exactly the records pinned for it."""
    pinned = _pinned()[row]

    actual = _normalized_once()[row]

    assert pinned == actual


def test_normalizing_a_page_twice_gives_equal_records() -> None:
    """Normalizing is a pure function: a second pass over the same pages gives equal records."""
    first = _normalized()

    second = _normalized()

    assert first == second


def test_a_judging_reader_gets_the_pinned_records_less_the_content_of_those_dropped_unread() -> (
    None
):
    """With ``releasable`` set, a public or direct item is its pinned record; any other
    keeps its id, tenancy and visibility, and nothing of its content."""
    releasable = PolicyEngine.RELEASABLE_VISIBILITIES
    full = _pages()

    lean = _pages(releasable)

    assert full.keys() == lean.keys()
    without_content = 0
    for key, records in full.items():
        for whole, read in zip(records, lean[key], strict=True):
            if whole.visibility in releasable:
                assert read == whole, key
            else:
                empty = replace(whole, subjects=(), data={}, occurred_at=None, extra={})
                assert read == empty, key
                without_content += 1
    assert without_content  # the fixtures hold items to drop by visibility


def test_a_judging_reader_gets_the_same_page_decisions() -> None:
    """Kept records, the rule each dropped one is dropped by, redactions and categories:
    all as for the records normalized in full."""
    engine = PolicyEngine(load_policy())
    full = _pages()

    lean = _pages(PolicyEngine.RELEASABLE_VISIBILITIES)

    for key, records in full.items():
        assert engine.decide_page(lean[key], _context()) == engine.decide_page(
            records, _context()
        ), key
