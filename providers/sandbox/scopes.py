"""The scopes the sandbox grants, in plain words, and which API resources need which."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

SCOPE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "openid": "Confirm who you are when you sign in",
        "email": "See your email address",
        "profile": "See your name and your page's name",
        "posts.read": "Read your page's posts and the comments on them",
        "messages.read": "Read the messages people send to your page",
        "calendar.read": "Read your calendar events and bookings",
    }
)

SUPPORTED_SCOPES: tuple[str, ...] = tuple(SCOPE_DESCRIPTIONS)

# Every scope is read-only: the sandbox offers no way to write, like the gateway asks.
API_SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "me": "profile",
        "posts": "posts.read",
        "comments": "posts.read",
        "conversations": "messages.read",
        "events": "calendar.read",
    }
)
