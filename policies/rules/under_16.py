"""Rule ``under-16``: data known to be about a child under 16 is neither returned nor stored.

Notice (CHILDREN'S PRIVACY): "Officium Solutions LLC does not knowingly provide
products or services directly to children under the age of 16, or knowingly
collect or solicit personal information from or about children under the age
of 16".

"Known" means any one fact says so: the provider's under-16 flag, a birth date
less than 16 years before the decision time, an age range whose upper bound is
below 16, or a field the provider classified as children's data
(``user.childrens``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from policies.taxonomy import is_within
from policies.vocabulary import Field, Subject

RULE_ID = "under-16"

AGE_OF_CONSENT = 16
CHILDRENS_CATEGORY = "user.childrens"

REASON = "the record is known to be about a child under 16"


def born_after_is_child(now: datetime) -> date:
    """The latest birth date of someone already 16 at ``now``.

    A person born on 29 February turns 16 on 28 February of a common year, so
    when sixteen years back has no 29 February the cut-off is the 28th.
    """
    today = now.date()
    try:
        return today.replace(year=today.year - AGE_OF_CONSENT)
    except ValueError:
        return today.replace(year=today.year - AGE_OF_CONSENT, day=28)


def is_child(subject: Subject, cutoff: date) -> bool:
    """True when any age fact about ``subject`` puts them under 16."""
    age = subject.age
    if age is None:
        return False
    if age.under_16:
        return True
    if age.birth_date is not None and age.birth_date > cutoff:
        return True
    return age.age_range_max is not None and age.age_range_max < AGE_OF_CONSENT


def any_child(subjects: Iterable[Subject], cutoff: date) -> bool:
    """True when any subject is known to be under 16."""
    return any(is_child(subject, cutoff) for subject in subjects)


def is_childrens_category(category: str) -> bool:
    """True for the Fides category of children's data and its descendants."""
    return is_within(category, CHILDRENS_CATEGORY)


def has_childrens_data(fields: Iterable[Field]) -> bool:
    """True when a field was classified as children's data."""
    return any(is_childrens_category(field.category) for field in fields)
