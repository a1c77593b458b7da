"""X API v2 answers, shaped as docs.x.com documents them (token, users/me, mentions, DM events)."""

from __future__ import annotations

from typing import Any

ACCOUNT_ID = "2244994945"

TOKEN: dict[str, Any] = {
    "token_type": "bearer",
    "expires_in": 7200,
    "access_token": "x-access-1",
    "scope": "tweet.read users.read dm.read offline.access",
    "refresh_token": "x-refresh-1",
}
REFRESHED: dict[str, Any] = {**TOKEN, "access_token": "x-access-2", "refresh_token": "x-refresh-2"}

ME: dict[str, Any] = {
    "data": {
        "id": ACCOUNT_ID,
        "name": "Acme Support",
        "username": "AcmeSupport",
        "protected": False,
    }
}

# Page 1: a public author and a protected one (expansions=author_id&user.fields=protected).
MENTIONS_1: dict[str, Any] = {
    "data": [
        {
            "id": "1500000000000000001",
            "text": "@AcmeSupport my order is late",
            "author_id": "111",
            "created_at": "2025-03-04T10:00:00.000Z",
            "conversation_id": "1500000000000000001",
        },
        {
            "id": "1500000000000000002",
            "text": "@AcmeSupport (protected account)",
            "author_id": "222",
            "created_at": "2025-03-04T11:00:00.000Z",
            "conversation_id": "1500000000000000002",
        },
        {
            "id": "1500000000000000003",
            "text": "@AcmeSupport author not expanded",
            "author_id": "333",
            "created_at": "2025-03-04T12:00:00.000Z",
            "conversation_id": "1500000000000000003",
        },
    ],
    "includes": {
        "users": [
            {"id": "111", "name": "Jane Roe", "username": "JaneRoe", "protected": False},
            {"id": "222", "name": "Private Pat", "username": "PrivatePat", "protected": True},
        ]
    },
    "meta": {
        "result_count": 3,
        "newest_id": "1500000000000000003",
        "oldest_id": "1500000000000000001",
        "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9",
    },
}
# An empty page that still carries a next token.
MENTIONS_2: dict[str, Any] = {"meta": {"result_count": 0, "next_token": "b26v89c19zqg8o3fpzbkk5"}}
MENTIONS_3: dict[str, Any] = {
    "data": [
        {
            "id": "1500000000000000004",
            "text": "@AcmeSupport thanks!",
            "author_id": "111",
            "created_at": "2025-03-05T09:00:00.000Z",
        },
    ],
    "includes": {
        "users": [{"id": "111", "name": "Jane Roe", "username": "JaneRoe", "protected": False}]
    },
    "meta": {"result_count": 1},
}

DM_EVENTS: dict[str, Any] = {
    "data": [
        {
            "id": "1580705921830768639",
            "text": "Hi, can you help?",
            "event_type": "MessageCreate",
            "dm_conversation_id": "111-2244994945",
            "created_at": "2025-03-04T10:00:00.000Z",
            "sender_id": "111",
            "participant_ids": ["111", ACCOUNT_ID],
        },
        {
            "id": "1580705921830768640",
            "text": "Sure, what is the order number?",
            "event_type": "MessageCreate",
            "dm_conversation_id": "111-2244994945",
            "created_at": "2025-03-04T10:01:00.000Z",
            "sender_id": ACCOUNT_ID,
            "participant_ids": ["111", ACCOUNT_ID],
        },
    ],
    "includes": {
        "users": [
            {"id": "111", "name": "Jane Roe", "username": "JaneRoe", "protected": False},
            {"id": ACCOUNT_ID, "name": "Acme Support", "username": "AcmeSupport"},
        ]
    },
    "meta": {"result_count": 2},
}

USAGE_CAPPED: dict[str, Any] = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.x.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
}
UNAUTHORIZED: dict[str, Any] = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
# A used (rotated-away) refresh token [community: X answers invalid_request, not invalid_grant].
REFRESH_REFUSED: dict[str, Any] = {
    "error": "invalid_request",
    "error_description": "Value passed for the token was invalid.",
}

# For the table-driven filter test: every kind of item, one page each.
PAGES: dict[str, list[dict[str, Any]]] = {
    "mentions": [MENTIONS_1, MENTIONS_2, MENTIONS_3],
    "dm_events": [DM_EVENTS],
}
