"""The sandbox normalizers: each demo item's visibility, subjects and field categories."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from policies import AgeHint, Identifier, IdentifierKind, Record, Visibility, default_taxonomy
from providers.base import NormalizeContext
from providers.sandbox import demo_data
from providers.sandbox.normalize import (
    normalize_comment,
    normalize_conversation,
    normalize_event,
    normalize_post,
    normalize_profile,
)

CTX = NormalizeContext(
    customer_id="cus_1",
    connection_id="con_1",
    provider="sandbox",
    resource="posts",
    fetched_at=datetime(2025, 5, 1, tzinfo=UTC),
)

POSTS = {post["id"]: post for post in demo_data.NORTHWIND_POSTS}
COMMENTS = {c["id"]: c for cs in demo_data.NORTHWIND_COMMENTS.values() for c in cs}
CONVERSATIONS = {c["id"]: c for c in demo_data.NORTHWIND_CONVERSATIONS}
EVENTS = {e["id"]: e for e in demo_data.NORTHWIND_EVENTS}


def every_record() -> Iterable[Record]:
    yield normalize_profile(demo_data.ADA.me(), CTX)
    yield from (normalize_post(item, CTX) for item in POSTS.values())
    yield from (normalize_comment(item, CTX) for item in COMMENTS.values())
    yield from (normalize_conversation(item, CTX) for item in CONVERSATIONS.values())
    yield from (normalize_event(item, CTX) for item in EVENTS.values())


@pytest.mark.parametrize(
    ("post_id", "visibility"),
    [
        ("post_1001", Visibility.PUBLIC),
        ("post_1002", Visibility.PUBLIC),
        ("post_1003", Visibility.RESTRICTED),  # friends only
        ("post_1004", Visibility.PRIVATE),  # only me
        ("post_1005", Visibility.PRIVATE),  # unpublished draft
        ("post_1006", Visibility.UNKNOWN),  # no privacy at all
        ("post_1007", Visibility.PUBLIC),
        ("post_1008", Visibility.RESTRICTED),  # custom audience
        ("post_1009", Visibility.UNKNOWN),  # a value the table does not know
        ("post_1010", Visibility.PUBLIC),
        ("post_1011", Visibility.PUBLIC),
        ("post_1012", Visibility.RESTRICTED),  # friends of friends
    ],
)
def test_post_visibility(post_id: str, visibility: Visibility) -> None:
    """Each demo post maps its audience to the expected visibility."""
    assert normalize_post(POSTS[post_id], CTX).visibility == visibility


@pytest.mark.parametrize(
    ("comment_id", "visibility"),
    [
        ("c_2001", Visibility.DIRECT),
        ("c_2002", Visibility.DIRECT),
        ("c_2003", Visibility.RESTRICTED),  # hidden by the page
        ("c_2004", Visibility.DIRECT),
        ("c_2005", Visibility.DIRECT),
        ("c_2006", Visibility.DIRECT),
        ("c_2007", Visibility.UNKNOWN),  # is_hidden missing
    ],
)
def test_comment_visibility(comment_id: str, visibility: Visibility) -> None:
    """Visible comments are direct, a hidden one restricted, one without is_hidden unknown."""
    assert normalize_comment(COMMENTS[comment_id], CTX).visibility == visibility


@pytest.mark.parametrize(
    ("event_id", "visibility"),
    [
        ("evt_4001", Visibility.PUBLIC),
        ("evt_4002", Visibility.PRIVATE),
        ("evt_4003", Visibility.RESTRICTED),  # confidential
        ("evt_4004", Visibility.DIRECT),  # a booking
        ("evt_4005", Visibility.UNKNOWN),  # "default"
        ("evt_4006", Visibility.UNKNOWN),  # missing
        ("evt_4007", Visibility.PUBLIC),
    ],
)
def test_event_visibility(event_id: str, visibility: Visibility) -> None:
    """Calendar visibility maps public/private/confidential; bookings are direct."""
    assert normalize_event(EVENTS[event_id], CTX).visibility == visibility


def test_conversations_and_profile_are_direct() -> None:
    """Messages to the page and the account holder's profile are directly provided."""
    assert {normalize_conversation(c, CTX).visibility for c in CONVERSATIONS.values()} == {
        Visibility.DIRECT
    }
    assert normalize_profile(demo_data.ADA.me(), CTX).visibility == Visibility.DIRECT


def test_records_carry_the_tenancy_of_the_context() -> None:
    """Every record is tagged with the context's customer, connection, provider and resource."""
    for record in every_record():
        assert (record.customer_id, record.connection_id, record.provider, record.resource) == (
            "cus_1",
            "con_1",
            "sandbox",
            "posts",
        )


def test_every_category_is_in_the_fides_taxonomy() -> None:
    """Every field of every demo record has a data category the Fides taxonomy knows."""
    taxonomy = default_taxonomy()
    categories = {f.category for record in every_record() for f in record.data.values()}
    assert categories
    assert {c for c in categories if taxonomy.category_problem(c) is not None} == set()


def test_post_author_subject_has_typed_normalized_identifiers() -> None:
    """Jane's post names her by provider id, handle and lower-cased email."""
    record = normalize_post(POSTS["post_1002"], CTX)
    (subject,) = record.subjects
    assert subject.identifiers == (
        Identifier(IdentifierKind.PROVIDER_USER_ID, "sandbox:usr_jane"),
        Identifier(IdentifierKind.HANDLE, "sandbox:janedoe"),
        Identifier(IdentifierKind.EMAIL, "jane@customer.example"),
    )
    assert record.data["author_email"].value == "jane@customer.example"
    assert record.data["place"].category == "user.location.precise"
    assert record.data["message"].category == "user.content.public"


def test_page_posts_have_no_end_user_subject() -> None:
    """A post by the customer's own page is about no End User."""
    record = normalize_post(POSTS["post_1001"], CTX)
    assert record.subjects == ()
    assert record.data["page_id"].category == "system.operations"


def test_private_content_is_categorised_private() -> None:
    """Content that is not public carries user.content.private."""
    assert normalize_post(POSTS["post_1004"], CTX).data["message"].category == (
        "user.content.private"
    )


@pytest.mark.parametrize(
    ("item", "age"),
    [
        (POSTS["post_1007"], AgeHint(age_range_max=15)),
        (POSTS["post_1012"], AgeHint(birth_date=date(2014, 5, 20))),
        (COMMENTS["c_2004"], AgeHint(age_range_max=15)),
    ],
)
def test_under_16_authors_carry_their_age_hint(item: dict[str, Any], age: AgeHint) -> None:
    """Authors known to be children carry the provider's age facts."""
    normalize = normalize_comment if item["id"].startswith("c_") else normalize_post
    (subject,) = normalize(item, CTX).subjects
    assert subject.age == age


def test_adult_authors_have_no_age_hint() -> None:
    """Where the provider says nothing about age, there is no age hint."""
    (subject,) = normalize_post(POSTS["post_1002"], CTX).subjects
    assert subject.age is None


def test_phone_only_participant_is_identified_in_e164() -> None:
    """The SMS thread's participant is identified by an E.164 phone number only."""
    record = normalize_conversation(CONVERSATIONS["conv_3002"], CTX)
    (subject,) = record.subjects
    assert subject.identifiers == (Identifier(IdentifierKind.PHONE, "+14155550100"),)
    assert subject.role == "participant"
    assert record.data["participant_phones"].value == ["+14155550100"]
    assert record.data["participant_phones"].sms_consent is False
    assert record.data["messages"].category == "user.content.private"


def test_booking_sms_consent_phone_is_flagged() -> None:
    """The booking's text_reminder_number is an E.164 phone flagged sms_consent."""
    record = normalize_event(EVENTS["evt_4004"], CTX)
    phone = record.data["text_reminder_number"]
    assert (phone.value, phone.category, phone.sms_consent) == (
        "+14155550199",
        "user.contact.phone_number",
        True,
    )
    (invitee,) = record.subjects
    assert invitee.role == "invitee"
    assert invitee.identifiers == (
        Identifier(IdentifierKind.EMAIL, "maria@customer.example"),
        Identifier(IdentifierKind.PHONE, "+14155550199"),
    )


def test_no_other_field_claims_sms_consent() -> None:
    """Only the booking's reminder number is flagged as an SMS-consent phone."""
    flagged = [
        (record.id, name)
        for record in every_record()
        for name, f in record.data.items()
        if f.sms_consent
    ]
    assert flagged == [("evt_4004", "text_reminder_number")]


def test_event_attendees_are_subjects_with_emails() -> None:
    """Attendees become attendee subjects and their emails a contact field."""
    record = normalize_event(EVENTS["evt_4001"], CTX)
    assert [s.role for s in record.subjects] == ["attendee", "attendee"]
    assert record.data["attendee_emails"].value == [
        "jane@customer.example",
        "omar@runners.example",
    ]
    assert record.data["attendee_emails"].category == "user.contact.email"


def test_profile_names_the_account_holder() -> None:
    """The profile's subject is the account holder, by provider id and email."""
    record = normalize_profile(demo_data.ADA.me(), CTX)
    (holder,) = record.subjects
    assert holder.role == "account_holder"
    assert Identifier(IdentifierKind.EMAIL, "ada@northwind.example") in holder.identifiers


def test_timestamps_become_occurred_at() -> None:
    """created_time, updated_time and start become the record's occurred_at."""
    record = normalize_post(POSTS["post_1001"], CTX)
    assert record.occurred_at == datetime(2025, 3, 1, 7, 0, tzinfo=UTC)


def test_garbage_items_fail_closed_without_raising() -> None:
    """An item with wrong types everywhere still normalizes, as unknown and subject-less."""
    junk: dict[str, Any] = {"id": 5, "privacy": "EVERYONE", "from": "me", "created_time": 3}
    record = normalize_post(junk, CTX)
    assert (record.id, record.visibility, record.subjects, record.occurred_at) == (
        "5",
        Visibility.UNKNOWN,
        (),
        None,
    )
    assert normalize_event({"visibility": 1, "attendees": "x"}, CTX).visibility == (
        Visibility.UNKNOWN
    )
    assert normalize_comment({"is_hidden": "no"}, CTX).visibility == Visibility.UNKNOWN


def test_unreadable_identifiers_are_skipped() -> None:
    """An identifier that cannot be normalized is left out; the readable ones remain."""
    person = {"id": "usr_x", "email": "not-an-email", "phone": "12"}
    record = normalize_conversation({"participants": [person]}, CTX)
    (subject,) = record.subjects
    assert subject.identifiers == (Identifier(IdentifierKind.PROVIDER_USER_ID, "sandbox:usr_x"),)
