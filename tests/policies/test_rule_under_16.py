"""Rule under-16.

Notice, CHILDREN'S PRIVACY: "Officium Solutions LLC does not knowingly provide
products or services directly to children under the age of 16, or knowingly
collect or solicit personal information from or about children under the age
of 16".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from policies import (
    UNDER_16,
    AccessContext,
    AgeHint,
    Field,
    Outcome,
    PolicyEngine,
    Record,
    Subject,
    email_identifier,
)
from policies.rules.under_16 import born_after_is_child


def subject_aged(age: AgeHint | None) -> Subject:
    return Subject(identifiers=(email_identifier("kid@example.com"),), age=age)


@pytest.mark.parametrize(
    "age",
    [
        AgeHint(under_16=True),
        AgeHint(birth_date=date(2009, 6, 16)),  # 16 tomorrow
        AgeHint(age_range_max=15),
        AgeHint(under_16=False, birth_date=date(2015, 1, 1)),  # one fact is enough
    ],
)
def test_known_child_is_dropped(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
    age: AgeHint,
) -> None:
    """A flag, a birth date under 16 at decision time, or an age range below 16 drops the record."""
    record = make_record(subjects=(subject_aged(age),))
    decision = engine.decide(record, make_context())
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, UNDER_16)


@pytest.mark.parametrize(
    "age",
    [
        None,
        AgeHint(),
        AgeHint(under_16=False),
        AgeHint(birth_date=date(2009, 6, 15)),  # 16 today
        AgeHint(age_range_max=17),  # "13-17" might be 16 or 17: not known to be a child
    ],
)
def test_not_known_child_is_kept(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
    age: AgeHint | None,
) -> None:
    """Without a fact that says under 16, the record is kept."""
    record = make_record(subjects=(subject_aged(age),))
    assert engine.decide(record, make_context()).allowed


def test_any_child_subject_drops_the_record(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """An adult's record that also names a child is dropped."""
    subjects = (subject_aged(None), subject_aged(AgeHint(under_16=True)))
    assert engine.decide(make_record(subjects=subjects), make_context()).rule_id == UNDER_16


def test_childrens_data_field_drops_the_record(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A field the provider classified as children's data drops the whole record."""
    record = make_record(data={"school": Field("Elm", "user.childrens")})
    assert engine.decide(record, make_context()).rule_id == UNDER_16


def test_leap_day_birthday_counts_on_28_february() -> None:
    """Someone born on 29 February is 16 on 28 February of a common year."""
    assert date(2004, 2, 29) == born_after_is_child(datetime(2020, 2, 29, tzinfo=UTC))
    assert date(1900, 2, 28) == born_after_is_child(datetime(1916, 2, 29, tzinfo=UTC))
