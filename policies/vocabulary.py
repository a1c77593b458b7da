"""The words every part of Linkgate uses to talk about End User data.

Providers translate their API items into :class:`Record` objects; the policy
engine judges records; the gateway serialises what the engine keeps. Nothing in
here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field
from datetime import date, datetime

from policies.value_type import value_type

JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]


class Visibility(enum.StrEnum):
    """Who the End User made an item visible to, as far as the provider says.

    Only ``public`` and ``direct`` may leave the gateway (rule ``public-or-direct``).
    """

    PUBLIC = "public"  # designated publicly accessible by the End User
    DIRECT = "direct"  # directly provided by the End User to the customer (DM, booking, comment)
    PRIVATE = "private"
    RESTRICTED = "restricted"  # friends-only, confidential, limited audience
    UNKNOWN = "unknown"  # missing or unmapped provider field: fail closed


class IdentifierKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PROVIDER_USER_ID = "provider_user_id"
    HANDLE = "handle"
    PSEUDONYM = "pseudonym"  # keyed hash standing in for another identifier (analytics purposes)


class CallerClass(enum.StrEnum):
    """How far from the operator a service caller stands (the notice's recipients)."""

    INTERNAL = "internal"
    AFFILIATE = "affiliate"
    THIRD_PARTY = "third_party"


@value_type
class Identifier:
    """A typed End User identifier, already normalized by ``policies.identifiers``."""

    kind: IdentifierKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@value_type
class AgeHint:
    """What a provider tells about a subject's age; any one known fact is enough."""

    under_16: bool | None = None
    birth_date: date | None = None
    age_range_max: int | None = None  # upper bound of a provider age range ("13-17" -> 17)


@value_type
class Subject:
    """One End User a record is about."""

    identifiers: tuple[Identifier, ...]
    age: AgeHint | None = None
    role: str = "author"  # author, attendee, invitee, participant, …


@value_type
class Field:
    """One value of a record together with its data category (a Fides taxonomy key)."""

    value: JSONValue
    category: str
    sms_consent: bool = False  # a phone number collected for SMS consent


@value_type
class Record:
    """A normalized provider item, tagged with the customer that owns its connection."""

    id: str
    customer_id: str
    connection_id: str
    provider: str
    resource: str
    visibility: Visibility
    subjects: tuple[Subject, ...]
    data: Mapping[str, Field]
    occurred_at: datetime | None = None
    extra: Mapping[str, JSONValue] = field(default_factory=dict)
