"""Assembling records from provider items: typed subjects and categorised fields.

Every real provider module turns its API's JSON into :class:`~policies.Record`
objects the same way: identifiers typed and normalized (emails lower-cased,
phones in E.164, provider ids and handles scoped to the provider), every value
with a Fides data category, values that are absent left out rather than
stored as nulls. This module is that one way; the provider modules keep the
parts that differ (which field means what, and the visibility tables).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from policies import (
    AgeHint,
    Field,
    Identifier,
    InvalidIdentifier,
    JSONValue,
    Record,
    Subject,
    Visibility,
    email_identifier,
    handle_identifier,
    normalize_email,
    normalize_phone,
    phone_identifier,
    provider_user_identifier,
)
from providers.base import NormalizeContext

PUBLIC_CONTENT = "user.content.public"
PRIVATE_CONTENT = "user.content.private"
EMAIL = "user.contact.email"
PHONE = "user.contact.phone_number"
USER_ID = "user.unique_id"
NAME = "user.name"
HANDLE = "user.account.username"
OPERATIONS = "system.operations"


def content_category(visibility: Visibility) -> str:
    """What an End User wrote is public content only when they made it public."""
    return PUBLIC_CONTENT if visibility is _PUBLIC else PRIVATE_CONTENT


# Read once: ``Visibility.PUBLIC`` goes through the enum metaclass on every access
# (about 1,000 instructions in 3.11), and content_category() runs for every item.
_PUBLIC = Visibility.PUBLIC


def subject(
    ctx: NormalizeContext,
    *,
    role: str,
    user_id: object = None,
    handle: object = None,
    email: object = None,
    phone: object = None,
    age: AgeHint | None = None,
) -> Subject | None:
    """The End User these identifiers name, or None when none of them is readable."""
    identifiers: list[Identifier] = []
    for raw, make in zip((user_id, handle, email, phone), _IDENTIFIER_MAKERS, strict=True):
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)  # Instagram sends some ids as JSON numbers
        if isinstance(raw, str) and raw:
            try:
                identifiers.append(make(ctx.provider, raw))
            except InvalidIdentifier:
                continue  # unreadable: it could match nothing; the others still can
    if not identifiers:
        return None
    # Positional: a class called with keywords costs twice the instructions in 3.11.
    return Subject(tuple(identifiers), age, role)


# The makers of subject()'s identifiers, in its order, each taking the provider
# and the raw value: built once here, not as closures on every call.
_IDENTIFIER_MAKERS: tuple[Callable[[str, str], Identifier], ...] = (
    provider_user_identifier,
    handle_identifier,
    lambda _provider, raw: email_identifier(raw),
    lambda _provider, raw: phone_identifier(raw),
)


def age_hint(*, birthday: object = None, age_range_max: object = None) -> AgeHint | None:
    """An age hint from a ``YYYY-MM-DD`` birthday and/or an age range's upper bound."""
    birth_date: date | None = None
    if isinstance(birthday, str):
        try:
            birth_date = date.fromisoformat(birthday)
        except ValueError:
            birth_date = None
    upper = (
        age_range_max
        if isinstance(age_range_max, int) and not isinstance(age_range_max, bool)
        else None
    )
    if birth_date is None and upper is None:
        return None
    return AgeHint(birth_date=birth_date, age_range_max=upper)


def fields(*entries: tuple[str, object, str]) -> dict[str, Field]:
    """Fields for the values present; emails and phones in their normalized form."""
    found: dict[str, Field] = {}
    for name, value, category in entries:
        # Most values are non-empty strings of a category kept as sent: answered
        # first, by exact type (no ``== []``, which builds a list per value).
        if value.__class__ is str and category not in _NORMALIZED:
            if value:
                found[name] = Field(value, category)
            continue
        if value is None or value == "" or value == []:
            continue
        if category == EMAIL:
            value = _each(value, _email)
        elif category == PHONE:
            value = _each(value, _phone)
        elif isinstance(value, str):
            found[name] = Field(value, category)
            continue
        found[name] = Field(plain(value), category)
    return found


# Categories whose values fields() rewrites into their normalized form.
_NORMALIZED = frozenset({EMAIL, PHONE})


def sms_phone(raw: str) -> Field:
    """A phone number given to receive text messages: the notice's "phone numbers
    collected for SMS consent will not be shared" applies to it (rule ``sms-phone``)."""
    return Field(_phone(raw), PHONE, sms_consent=True)


def record(
    ctx: NormalizeContext,
    *,
    id: object,
    visibility: Visibility,
    subjects: Iterable[Subject | None],
    data: dict[str, Field],
    occurred_at: object = None,
    extra: Mapping[str, object] | None = None,
) -> Record:
    """A record born tagged with the customer that owns the connection (rule ``tenant-tag``)."""
    # Positional, in the order Record declares its fields: a class called with
    # keywords goes through a dict of them in 3.11, twice the instructions.
    return Record(
        _record_id(id),
        ctx.customer_id,
        ctx.connection_id,
        ctx.provider,
        ctx.resource,
        visibility,
        tuple([s for s in subjects if s is not None]),
        data,
        timestamp(occurred_at),
        _plain_extra(extra) if extra else {},
    )


def without_content(ctx: NormalizeContext, *, id: object, visibility: Visibility) -> Record:
    """The record of an item its reader drops by visibility alone (``ctx.drops``).

    Rule ``public-or-direct`` drops it whatever it holds, and the only rule the
    engine runs before it, ``tenant-tag``, reads the tenancy this record keeps:
    the page's decision, and the rule each record is dropped by, are the ones
    the full record would get. Its fields, subjects, time and extras are never
    released, looked up or audited, so they are not assembled: most of a
    normalizer's work, on a page where most items are not public.
    """
    # Positional, as record() builds one: the keyword call and its time and
    # extras checks would double the cost of the page's cheapest records.
    return Record(
        _record_id(id),
        ctx.customer_id,
        ctx.connection_id,
        ctx.provider,
        ctx.resource,
        visibility,
        (),
        {},
    )


def _record_id(id: object) -> str:
    return id if id.__class__ is str else str(id) if id is not None else ""


def _plain_extra(extra: Mapping[str, object]) -> dict[str, JSONValue]:
    # Extras are mostly the provider's own scalars (a visibility string, a
    # flag): those are plain JSON already and are copied as they are.
    copied: dict[str, Any] = dict(extra)
    for key, value in copied.items():
        if value is not None and not isinstance(value, _SCALARS):
            copied[key] = plain(value)
    return copied


def mapping(value: object) -> Mapping[str, Any]:
    # Parsed JSON objects are dicts and absent ones None: both answered before
    # the Mapping ABC check, which costs several times an exact type check.
    if value is None:
        return {}
    return value if isinstance(value, _MAPPINGS) else {}


def listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def present(values: Iterable[object]) -> list[str]:
    return [str(v) for v in values if v]


def timestamp(value: object) -> datetime | None:
    """ISO 8601 as the providers send it (Graph's ``+0000`` offsets included)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        # Python 3.11 reads ``Z`` and ``+0000`` itself: most values parse as sent.
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # Graph: 2025-03-04T10:00:00+0000
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# Tuples, not ``str | int | ...``: that expression builds a new union object on
# every call, and plain() runs for every field of every record of a page.
_SCALARS = (str, int, float, bool)
_SEQUENCES = (list, tuple)
_MAPPINGS = (dict, Mapping)  # parsed JSON is dicts: checked before the slower ABC


def plain(value: object) -> JSONValue:
    """``value`` as plain JSON, for a record's data and extra."""
    if value is None or isinstance(value, _SCALARS):
        return value
    # Nested scalars are answered in place rather than by a call each: a place
    # or an answer is an object of a few strings and numbers.
    if isinstance(value, _MAPPINGS):
        return {
            k if k.__class__ is str else str(k): v
            if v is None or isinstance(v, _SCALARS)
            else plain(v)
            for k, v in value.items()
        }
    if isinstance(value, _SEQUENCES):
        return [v if v is None or isinstance(v, _SCALARS) else plain(v) for v in value]
    return str(value)


def _each(value: object, normalize: Any) -> object:
    if isinstance(value, str):
        return normalize(value)
    if isinstance(value, list):
        return [normalize(v) if isinstance(v, str) else v for v in value]
    return value


# The values email_identifier() and phone_identifier() would hold, without
# building the Identifier only to read its value back.
def _email(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidIdentifier:
        return raw


def _phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidIdentifier:
        return raw
