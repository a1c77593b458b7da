"""The sandbox's demo accounts and everything a privacy policy must be able to handle.

The main account, Ada's page "Northwind Bakery", holds one example of each case:

| case | where |
| --- | --- |
| public posts, by the page and by End Users | post_1001, 1002, 1007, 1010, 1011 |
| friends-only / custom / friends-of-friends posts | post_1003, post_1008, post_1012 |
| a private post | post_1004 |
| an unpublished (draft) post | post_1005 |
| a missing and an unknown privacy value | post_1006 (missing), post_1009 (unknown) |
| a precise location | post_1002 |
| comments by several End Users, one hidden, one without is_hidden | on post_1001, 1010 |
| direct messages to the page (by email, phone and handle) | conv_3001, conv_3002, conv_3003 |
| calendar events public / private / confidential with attendee emails | evt_4001 … evt_4003 |
| calendar visibility "default" and missing | evt_4005, evt_4006 |
| a booking whose invitee gave an SMS-consent phone number | evt_4004 (text_reminder_number) |
| End Users under 16 | Tim (age_range max 15), Lily (birthday 2014) |
| identifiers of every kind | email (Jane, mixed case on purpose), phone (Luis), id and handle |

Ben's account ("Ben's Bikes") is small and lets tests see that data stays per account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Item = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoAccount:
    """One account a user can sign in as, with the page and calendar it links."""

    user_id: str
    name: str
    email: str
    page: Item
    posts: tuple[Item, ...] = ()
    comments: Mapping[str, tuple[Item, ...]] = field(default_factory=dict)
    conversations: tuple[Item, ...] = ()
    events: tuple[Item, ...] = ()

    def me(self) -> dict[str, Any]:
        return {"id": self.user_id, "name": self.name, "email": self.email, "page": self.page}


# End Users, as the API shows them when they write something.
JANE = {
    "id": "usr_jane",
    "name": "Jane Doe",
    "handle": "@JaneDoe",
    "email": "Jane@Customer.Example",  # mixed case: the normalizer lower-cases it
}
OMAR = {"id": "usr_omar", "name": "Omar Khan", "handle": "omar.k"}
SAM = {"id": "usr_sam", "name": "Sam Lee", "handle": "samlee"}
KAI = {"id": "usr_kai", "name": "Kai Tanaka", "handle": "kai_t"}
PRIYA = {"id": "usr_priya", "name": "Priya Natarajan", "handle": "priya.n"}
TIM = {"id": "usr_tim", "name": "Tim", "handle": "timmy_skates", "age_range": {"max": 15}}
LILY = {"id": "usr_lily", "name": "Lily", "handle": "lily.draws", "birthday": "2014-05-20"}
LUIS = {"name": "Luis", "phone": "+1 415 555 0100"}  # known only by phone (an SMS thread)

NORTHWIND = {"id": "page_northwind", "name": "Northwind Bakery", "handle": "northwindbakery"}
PAGE_AUTHOR = {"id": NORTHWIND["id"], "name": NORTHWIND["name"], "is_page": True}


def _post(post_id: str, author: Item, message: str, created: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": post_id,
        "from": author,
        "message": message,
        "created_time": created,
        "is_published": True,
        **extra,
    }


_PUBLIC = {"value": "EVERYONE"}

NORTHWIND_POSTS: tuple[Item, ...] = (
    _post("post_1001", PAGE_AUTHOR, "Fresh sourdough every morning at 7.", "2025-03-01T07:00:00Z",
          privacy=_PUBLIC),
    _post("post_1002", JANE, "Best croissant in the Mission!", "2025-03-02T10:15:00Z",
          privacy=_PUBLIC,
          place={"name": "Dolores Park", "latitude": 37.7596, "longitude": -122.4269}),
    _post("post_1003", SAM, "Birthday cake pickup with the family.", "2025-03-03T16:00:00Z",
          privacy={"value": "ALL_FRIENDS"}),
    _post("post_1004", KAI, "Note to self: order rye for Friday.", "2025-03-04T08:30:00Z",
          privacy={"value": "SELF"}),
    _post("post_1005", PAGE_AUTHOR, "Draft: spring menu coming soon.", "2025-03-05T12:00:00Z",
          privacy=_PUBLIC, is_published=False),
    _post("post_1006", OMAR, "Is the bakery open on Sunday?", "2025-03-06T09:45:00Z"),
    _post("post_1007", TIM, "The cinnamon rolls are awesome", "2025-03-07T15:20:00Z",
          privacy=_PUBLIC),
    _post("post_1008", OMAR, "Sharing with my running club.", "2025-03-08T06:10:00Z",
          privacy={"value": "CUSTOM", "allow": "group_runners"}),
    _post("post_1009", JANE, "Trying the new audience setting.", "2025-03-09T11:00:00Z",
          privacy={"value": "CLOSE_CIRCLE_BETA"}),
    _post("post_1010", PAGE_AUTHOR, "We are hiring a morning baker.", "2025-03-10T08:00:00Z",
          privacy=_PUBLIC),
    _post("post_1011", PAGE_AUTHOR, "Closed on Monday for a deep clean.", "2025-03-11T18:00:00Z",
          privacy=_PUBLIC),
    _post("post_1012", LILY, "I drew the bakery!", "2025-03-12T17:30:00Z",
          privacy={"value": "FRIENDS_OF_FRIENDS"}),
)  # fmt: skip


def _comment(
    comment_id: str, author: Item, message: str, created: str, **extra: Any
) -> dict[str, Any]:
    return {"id": comment_id, "from": author, "message": message, "created_time": created, **extra}


NORTHWIND_COMMENTS: Mapping[str, tuple[Item, ...]] = MappingProxyType({
    "post_1001": (
        _comment("c_2001", JANE, "Saving me a loaf?", "2025-03-01T07:05:00Z", is_hidden=False),
        _comment("c_2002", OMAR, "What time do you close?", "2025-03-01T07:30:00Z",
                 is_hidden=False),
        _comment("c_2003", PRIYA, "Overpriced, honestly.", "2025-03-01T08:00:00Z",
                 is_hidden=True),
        _comment("c_2004", TIM, "can i come after school", "2025-03-01T15:10:00Z",
                 is_hidden=False),
        _comment("c_2005", LILY, "yummy", "2025-03-01T16:00:00Z", is_hidden=False),
    ),
    "post_1010": (
        _comment("c_2006", JANE, "My cousin is a baker, sharing!", "2025-03-10T09:00:00Z",
                 is_hidden=False),
        # No is_hidden at all: the normalizer cannot tell, so it must fail closed.
        _comment("c_2007", OMAR, "Is it full time?", "2025-03-10T09:30:00Z"),
    ),
})  # fmt: skip

_PAGE_PARTICIPANT = {"id": NORTHWIND["id"], "name": NORTHWIND["name"], "is_page": True}

NORTHWIND_CONVERSATIONS: tuple[Item, ...] = (
    {
        "id": "conv_3001",
        "channel": "messenger",
        "updated_time": "2025-03-02T12:01:00Z",
        "participants": [JANE, _PAGE_PARTICIPANT],
        "messages": [
            {"id": "m_1", "from": JANE, "text": "Can I order a cake for Saturday?",
             "created_time": "2025-03-02T12:00:00Z"},
            {"id": "m_2", "from": _PAGE_PARTICIPANT, "text": "Yes! Which size?",
             "created_time": "2025-03-02T12:01:00Z"},
        ],
    },
    {
        "id": "conv_3002",
        "channel": "sms",
        "updated_time": "2025-03-04T09:00:00Z",
        "participants": [LUIS, _PAGE_PARTICIPANT],
        "messages": [
            {"id": "m_3", "from": LUIS, "text": "Running 10 min late for pickup",
             "created_time": "2025-03-04T09:00:00Z"},
        ],
    },
    {
        "id": "conv_3003",
        "channel": "messenger",
        "updated_time": "2025-03-07T15:30:00Z",
        "participants": [TIM, _PAGE_PARTICIPANT],
        "messages": [
            {"id": "m_4", "from": TIM, "text": "do you sell gift cards",
             "created_time": "2025-03-07T15:30:00Z"},
        ],
    },
)  # fmt: skip

ADA_EMAIL = "ada@northwind.example"

NORTHWIND_EVENTS: tuple[Item, ...] = (
    {
        "id": "evt_4001",
        "event_type": "meeting",
        "summary": "Sourdough workshop",
        "description": "Open class, bring an apron.",
        "start": "2025-04-05T10:00:00Z",
        "end": "2025-04-05T12:00:00Z",
        "visibility": "public",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [
            {"email": "Jane@Customer.Example", "display_name": "Jane Doe",
             "response_status": "accepted"},
            {"email": "omar@runners.example", "response_status": "tentative"},
        ],
    },
    {
        "id": "evt_4002",
        "event_type": "meeting",
        "summary": "Dentist",
        "start": "2025-04-07T08:00:00Z",
        "end": "2025-04-07T09:00:00Z",
        "visibility": "private",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [],
    },
    {
        "id": "evt_4003",
        "event_type": "meeting",
        "summary": "Flour supplier negotiation",
        "description": "Prices for Q3.",
        "start": "2025-04-08T14:00:00Z",
        "end": "2025-04-08T15:00:00Z",
        "visibility": "confidential",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [{"email": "bob@flourmill.example", "response_status": "accepted"}],
    },
    {
        "id": "evt_4004",
        "event_type": "booking",
        "summary": "Cake tasting",
        "start": "2025-04-09T16:00:00Z",
        "end": "2025-04-09T16:30:00Z",
        "organizer": {"email": ADA_EMAIL},
        "invitee": {
            "name": "Maria Garcia",
            "email": "maria@customer.example",
            # Given on the booking form to receive text reminders: SMS consent.
            "text_reminder_number": "+1 (415) 555-0199",
        },
        "questions_and_answers": [
            {"question": "Allergies?", "answer": "Peanuts"},
        ],
    },
    {
        "id": "evt_4005",
        "event_type": "meeting",
        "summary": "Team lunch",
        "start": "2025-04-10T12:00:00Z",
        "end": "2025-04-10T13:00:00Z",
        "visibility": "default",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [{"email": "sam@staff.example", "response_status": "accepted"}],
    },
    {
        "id": "evt_4006",
        "event_type": "meeting",
        "summary": "Oven maintenance",
        "start": "2025-04-11T06:00:00Z",
        "end": "2025-04-11T07:00:00Z",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [],
    },
    {
        "id": "evt_4007",
        "event_type": "meeting",
        "summary": "Farmers market stall",
        "start": "2025-04-12T08:00:00Z",
        "end": "2025-04-12T13:00:00Z",
        "visibility": "public",
        "organizer": {"email": ADA_EMAIL},
        "attendees": [],
    },
)  # fmt: skip

ADA = DemoAccount(
    user_id="usr_ada",
    name="Ada Baker",
    email=ADA_EMAIL,
    page=NORTHWIND,
    posts=NORTHWIND_POSTS,
    comments=NORTHWIND_COMMENTS,
    conversations=NORTHWIND_CONVERSATIONS,
    events=NORTHWIND_EVENTS,
)

BENS_BIKES = {"id": "page_bensbikes", "name": "Ben's Bikes", "handle": "bensbikes"}

BEN = DemoAccount(
    user_id="usr_ben",
    name="Ben Rider",
    email="ben@bensbikes.example",
    page=BENS_BIKES,
    posts=(
        _post("post_5001", {"id": BENS_BIKES["id"], "name": BENS_BIKES["name"], "is_page": True},
              "Spring tune-ups are 20% off.", "2025-03-15T09:00:00Z", privacy=_PUBLIC),
    ),
    events=(
        {
            "id": "evt_6001",
            "event_type": "meeting",
            "summary": "Group ride",
            "start": "2025-04-20T09:00:00Z",
            "end": "2025-04-20T11:00:00Z",
            "visibility": "public",
            "organizer": {"email": "ben@bensbikes.example"},
            "attendees": [],
        },
    ),
)  # fmt: skip

ACCOUNTS: Mapping[str, DemoAccount] = MappingProxyType({ADA.user_id: ADA, BEN.user_id: BEN})
DEMO_USER_ID = ADA.user_id
