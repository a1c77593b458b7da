"""The pure state machine: transitions, due dates, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.processor_requests import (
    TRANSITIONS,
    InvalidTransition,
    Jurisdiction,
    Kind,
    Status,
    due_at,
    due_dates,
    duplicate_key,
    is_overdue,
    transition,
)

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def test_finished_requests_go_nowhere() -> None:
    """Completed, failed and rejected are terminal."""
    assert [TRANSITIONS[s] for s in (Status.COMPLETED, Status.FAILED, Status.REJECTED)] == [
        frozenset()
    ] * 3


def test_a_received_request_cannot_run_before_it_is_verified() -> None:
    """received → running is refused with a 409 problem."""
    with pytest.raises(InvalidTransition):
        transition(Status.RECEIVED, Status.RUNNING)


def test_without_a_jurisdiction_the_stricter_30_days_apply() -> None:
    """No jurisdiction: GDPR's month; CCPA's 45 days are shown too."""
    assert due_at(RECEIVED, None) == RECEIVED + timedelta(days=30)
    assert due_at(RECEIVED, Jurisdiction.CCPA) == RECEIVED + timedelta(days=45)
    assert due_dates(RECEIVED) == {
        "gdpr": RECEIVED + timedelta(days=30),
        "ccpa": RECEIVED + timedelta(days=45),
    }


def test_only_open_requests_are_overdue() -> None:
    """A completed request past its date is not overdue; a running one is."""
    late = RECEIVED + timedelta(days=31)
    due = due_at(RECEIVED, None)
    assert is_overdue(Status.RUNNING, due, late)
    assert not is_overdue(Status.COMPLETED, due, late)


def test_the_duplicate_key_ignores_order_and_tells_kinds_apart() -> None:
    """Same subject in another order is a duplicate; another kind is not."""
    a = duplicate_key("acme", Kind.ERASURE, ["h:1", "h:2"])
    assert a == duplicate_key("acme", Kind.ERASURE, ["h:2", "h:1"])
    assert a != duplicate_key("acme", Kind.ACCESS, ["h:1", "h:2"])
