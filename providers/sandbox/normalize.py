"""How sandbox API items become records: visibility, subjects and categorised fields.

Pure functions over parsed JSON; nothing here does I/O. Anything the sandbox
does not say, or says in a way not listed below, becomes ``Visibility.UNKNOWN``
so that the ``public-or-direct`` rule drops it (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from policies import (
    AgeHint,
    Identifier,
    InvalidIdentifier,
    Record,
    Subject,
    Visibility,
    email_identifier,
    handle_identifier,
    phone_identifier,
    provider_user_identifier,
)
from providers.assembly import (
    PRIVATE_CONTENT,
    content_category,
    fields,
    listed,
    mapping,
    present,
    record,
    sms_phone,
    without_content,
)
from providers.base import JSONObject, NormalizeContext

# Post audience (``privacy.value``), the sandbox's copy of a social network's audience picker.
POST_PRIVACY: Mapping[str, Visibility] = {
    "EVERYONE": Visibility.PUBLIC,  # "Public": designated publicly accessible by its author
    "ALL_FRIENDS": Visibility.RESTRICTED,  # "Friends"
    "FRIENDS_OF_FRIENDS": Visibility.RESTRICTED,  # wider, but still not public
    "CUSTOM": Visibility.RESTRICTED,  # a hand-picked audience
    "SELF": Visibility.PRIVATE,  # "Only me"
}

# A comment on the customer's post is directly provided to the customer, unless the
# page hid it: then only its author (and their friends) still see it.
COMMENT_HIDDEN: Mapping[bool, Visibility] = {
    False: Visibility.DIRECT,
    True: Visibility.RESTRICTED,
}

# Calendar ``visibility`` of a meeting; "default" defers to calendar settings the API
# does not show, so it is as unknown as a missing value.
EVENT_VISIBILITY: Mapping[str, Visibility] = {
    "public": Visibility.PUBLIC,
    "private": Visibility.PRIVATE,
    "confidential": Visibility.RESTRICTED,
    "default": Visibility.UNKNOWN,
}

# Enum members read once: ``Visibility.X`` goes through the enum metaclass on
# every access (about 1,000 instructions in 3.11), and these run for every item.
_UNKNOWN = Visibility.UNKNOWN
_PRIVATE = Visibility.PRIVATE

# Where the kind of item itself settles it.
DIRECT_MESSAGE = Visibility.DIRECT  # a message sent to the customer's page
BOOKING = Visibility.DIRECT  # the invitee booked with the customer themselves
OWN_PROFILE = Visibility.DIRECT  # the linked account holder's own profile, shared by linking


def normalize_profile(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/api/me``: the account holder who linked the account."""
    page = mapping(item.get("page"))
    data = fields(
        ("id", item.get("id"), "user.unique_id"),
        ("name", item.get("name"), "user.name"),
        ("email", item.get("email"), "user.contact.email"),
        # The page is the customer's business, not an End User.
        ("page_id", page.get("id"), "system.operations"),
        ("page_name", page.get("name"), "system.operations"),
        ("page_handle", page.get("handle"), "system.operations"),
    )
    holder = _subject(item, ctx, role="account_holder")
    return record(
        ctx,
        id=item.get("id", ""),
        visibility=OWN_PROFILE,
        subjects=[holder],
        data=data,
        occurred_at=None,
        extra={},
    )


def normalize_post(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/api/posts``: posts on the linked page, by the page or by End Users."""
    privacy = mapping(item.get("privacy")).get("value")
    visibility = POST_PRIVACY.get(privacy, _UNKNOWN) if isinstance(privacy, str) else _UNKNOWN
    if item.get("is_published") is False:
        # A draft is seen by the page's admins only, whatever audience it will get.
        visibility = _PRIVATE
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id", ""), visibility=visibility)
    author = mapping(item.get("from"))
    data = fields(
        ("message", item.get("message"), content_category(visibility)),
        ("created_time", item.get("created_time"), "system.operations"),
        ("place", item.get("place"), "user.location.precise"),
        *_author_fields(author),
    )
    return record(
        ctx,
        id=item.get("id", ""),
        visibility=visibility,
        subjects=[_subject(author, ctx, role="author")],
        data=data,
        occurred_at=item.get("created_time"),
        extra={"provider_visibility": privacy, "is_published": item.get("is_published")},
    )


def normalize_comment(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/api/posts/{post_id}/comments``: comments on one of the page's posts."""
    hidden = item.get("is_hidden")
    visibility = COMMENT_HIDDEN.get(hidden, _UNKNOWN) if isinstance(hidden, bool) else _UNKNOWN
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id", ""), visibility=visibility)
    author = mapping(item.get("from"))
    data = fields(
        ("message", item.get("message"), content_category(visibility)),
        ("created_time", item.get("created_time"), "system.operations"),
        *_author_fields(author),
    )
    return record(
        ctx,
        id=item.get("id", ""),
        visibility=visibility,
        subjects=[_subject(author, ctx, role="author")],
        data=data,
        occurred_at=item.get("created_time"),
        extra={"provider_visibility": hidden},
    )


def normalize_conversation(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/api/conversations``: direct-message threads with the page."""
    people = [mapping(p) for p in listed(item.get("participants")) if not _is_page(p)]
    messages = [
        {
            "from": str(mapping(message.get("from")).get("name", "")),
            "text": str(message.get("text", "")),
            "created_time": str(message.get("created_time", "")),
        }
        for message in map(mapping, listed(item.get("messages")))
    ]
    data = fields(
        ("channel", item.get("channel"), "system.operations"),
        ("participant_ids", present(p.get("id") for p in people), "user.unique_id"),
        ("participant_names", present(p.get("name") for p in people), "user.name"),
        ("participant_handles", present(p.get("handle") for p in people),
         "user.account.username"),
        ("participant_emails", present(p.get("email") for p in people), "user.contact.email"),
        ("participant_phones", present(p.get("phone") for p in people),
         "user.contact.phone_number"),
        ("messages", messages or None, PRIVATE_CONTENT),
    )  # fmt: skip
    return record(
        ctx,
        id=item.get("id", ""),
        visibility=DIRECT_MESSAGE,
        subjects=[_subject(p, ctx, role="participant") for p in people],
        data=data,
        occurred_at=item.get("updated_time"),
        extra={},
    )


def normalize_event(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/api/events``: calendar events and bookings."""
    raw = item.get("visibility")
    if item.get("event_type") == "booking":
        visibility = BOOKING
    elif isinstance(raw, str):
        visibility = EVENT_VISIBILITY.get(raw, _UNKNOWN)
    else:
        visibility = _UNKNOWN
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id", ""), visibility=visibility)
    content = content_category(visibility)
    attendees = [mapping(a) for a in listed(item.get("attendees"))]
    invitee = mapping(item.get("invitee"))
    answers = [mapping(qa) for qa in listed(item.get("questions_and_answers"))]
    reminder = invitee.get("text_reminder_number")
    data = fields(
        ("summary", item.get("summary"), content),
        ("description", item.get("description"), content),
        ("start", item.get("start"), content),
        ("end", item.get("end"), content),
        ("organizer_email", mapping(item.get("organizer")).get("email"), "user.contact.email"),
        ("attendee_emails", present(a.get("email") for a in attendees), "user.contact.email"),
        ("attendee_names", present(a.get("display_name") for a in attendees), "user.name"),
        ("invitee_name", invitee.get("name"), "user.name"),
        ("invitee_email", invitee.get("email"), "user.contact.email"),
        ("answers", [dict(qa) for qa in answers] or None, PRIVATE_CONTENT),
    )
    if isinstance(reminder, str) and reminder:
        # Given to receive text reminders: the notice's "phone numbers collected for SMS
        # consent will not be shared" applies to this field.
        data["text_reminder_number"] = sms_phone(reminder)
    subjects = [_subject(a, ctx, role="attendee") for a in attendees]
    if invitee:
        subjects.append(_subject({**invitee, "phone": reminder}, ctx, role="invitee"))
    return record(
        ctx,
        id=item.get("id", ""),
        visibility=visibility,
        subjects=subjects,
        data=data,
        occurred_at=item.get("start"),
        extra={"provider_visibility": raw, "event_type": item.get("event_type")},
    )


# Building blocks --------------------------------------------------------------


def _subject(person: Mapping[str, Any], ctx: NormalizeContext, *, role: str) -> Subject | None:
    """The End User ``person`` describes, or None for the customer's own page or nobody."""
    if not person or _is_page(person):
        return None
    identifiers: list[Identifier] = []
    for name, make in _IDENTIFIER_MAKERS:
        raw = person.get(name)
        if isinstance(raw, str) and raw:
            try:
                identifiers.append(make(ctx.provider, raw))
            except InvalidIdentifier:
                continue  # an unreadable identifier cannot match anything; the others still can
    return Subject(tuple(identifiers), _age(person), role)  # positional: half the cost


# A person's fields that identify them, in the order a subject lists them:
# (field, maker taking the provider and the raw value).
_IDENTIFIER_MAKERS: tuple[tuple[str, Callable[[str, str], Identifier]], ...] = (
    ("id", provider_user_identifier),
    ("handle", handle_identifier),
    ("email", lambda _provider, raw: email_identifier(raw)),
    ("phone", lambda _provider, raw: phone_identifier(raw)),
)


def _age(person: Mapping[str, Any]) -> AgeHint | None:
    """What the sandbox tells about age: an ``age_range`` and/or a ``birthday``."""
    if "age_range" not in person and "birthday" not in person:
        return None  # most people's items say nothing about their age
    age_max = mapping(person.get("age_range")).get("max")
    birthday = person.get("birthday")
    birth_date: date | None = None
    if isinstance(birthday, str):
        try:
            birth_date = date.fromisoformat(birthday)
        except ValueError:
            birth_date = None
    valid_max = age_max if isinstance(age_max, int) and not isinstance(age_max, bool) else None
    if valid_max is None and birth_date is None:
        return None
    return AgeHint(birth_date=birth_date, age_range_max=valid_max)


def _author_fields(author: Mapping[str, Any]) -> list[tuple[str, object, str]]:
    if _is_page(author):
        return [("page_id", author.get("id"), "system.operations")]
    return [
        ("author_id", author.get("id"), "user.unique_id"),
        ("author_name", author.get("name"), "user.name"),
        ("author_handle", author.get("handle"), "user.account.username"),
        ("author_email", author.get("email"), "user.contact.email"),
    ]


def _is_page(person: object) -> bool:
    return isinstance(person, _MAPPINGS) and person.get("is_page") is True


_MAPPINGS = (dict, Mapping)  # parsed JSON is dicts: checked before the slower ABC
