"""Google: OpenID Connect sign-in and Calendar API v3 events.

Endpoints from Google's discovery document
(https://accounts.google.com/.well-known/openid-configuration); refresh and
revocation from "Using OAuth 2.0 for Web Server Applications"; errors from the
Calendar guide "Handle API errors"; event fields from the Events resource
(https://developers.google.com/calendar/api/v3/reference/events).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from policies import (
    Field,
    Identifier,
    InvalidIdentifier,
    JSONValue,
    Record,
    Subject,
    Visibility,
    email_identifier,
)
from providers.assembly import without_content
from providers.base import (
    ClientAuth,
    Endpoints,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    JSONObject,
    NormalizeContext,
    OAuthSettings,
    PageStyle,
    Pagination,
    Provider,
    Resource,
    oidc_account,
)
from providers.oidc import normalize_profile

# "See the events on Google calendars you own" (Calendar API scopes, developers.google.com/
# workspace/calendar/api/auth, which asks for the narrowest scope; the constant
# CALENDAR_EVENTS_OWNED_READONLY in Google's generated Java client). The only calendar read
# is ``primary``, which the linked account owns, so this covers it; the broader
# ``calendar.events.readonly`` would also show every calendar shared with the account.
# The events.get reference (developers.google.com/calendar/api/v3/reference/events/get,
# "Authorization", updated 2025-05-30) lists it among the scopes the method accepts; the
# events.list page's own list was not seen here. A refusal would be a visible 403
# insufficientPermissions, never data the grant did not cover.
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events.owned.readonly"

# Event ``visibility`` (absent means "default"), read together with whether the linked
# calendar is itself a party to the event (``organizer.self`` or an ``attendees[].self``).
# A party received the attendees' addresses from them directly (an invitation, a
# booking); "private"/"confidential" mean the organizer limited the details to the
# attendees, so nothing leaves the gateway. Not a party: only an explicitly public
# event is public; "default" defers to calendar settings the API does not show.
EVENT_VISIBILITY: Mapping[tuple[str, bool], Visibility] = {
    ("default", True): Visibility.DIRECT,
    ("public", True): Visibility.DIRECT,
    ("private", True): Visibility.PRIVATE,
    ("confidential", True): Visibility.PRIVATE,
    ("public", False): Visibility.PUBLIC,
    ("default", False): Visibility.UNKNOWN,
    ("private", False): Visibility.PRIVATE,
    ("confidential", False): Visibility.PRIVATE,
}

CONTENT = "user.content.private"
EMAIL = "user.contact.email"


def event_visibility(item: JSONObject) -> Visibility:
    """The visibility of one event; anything the table does not know is UNKNOWN."""
    if item.get("privateCopy") is True:
        return Visibility.PRIVATE  # a copy whose changes stay on this calendar only
    if "start" not in item:
        return Visibility.UNKNOWN  # e.g. a cancelled event carrying only its id
    raw = item.get("visibility", "default")
    if not isinstance(raw, str):
        return Visibility.UNKNOWN
    return EVENT_VISIBILITY.get((raw, _is_party(item)), Visibility.UNKNOWN)


def normalize_event(item: JSONObject, ctx: NormalizeContext) -> Record:
    """One ``events.list`` item: the attendees and organizer are the End Users."""
    visibility = event_visibility(item)
    if ctx.drops(visibility):
        return without_content(ctx, id=str(item["id"]), visibility=visibility)
    organizer = _mapping(item.get("organizer"))
    others = [a for a in map(_mapping, _list(item.get("attendees"))) if a.get("self") is not True]
    entries: list[tuple[str, JSONValue, str]] = [
        ("summary", item.get("summary"), CONTENT),
        ("description", item.get("description"), CONTENT),
        ("location", item.get("location"), "user.location.imprecise"),
        ("start", _when(item.get("start")), "system.operations"),
        ("end", _when(item.get("end")), "system.operations"),
        ("status", item.get("status"), "system.operations"),
        ("organizer_email", _email(organizer.get("email")), EMAIL),
        ("attendee_emails", [e for a in others if (e := _email(a.get("email")))] or None, EMAIL),
        ("attendee_names", [n for a in others if (n := a.get("displayName"))] or None,
         "user.name"),
    ]  # fmt: skip
    data: dict[str, Field] = {}
    for name, value, category in entries:
        if value is not None and value != "":
            data[name] = Field(value, category)
    subjects = [_subject(a, "attendee") for a in others]
    if organizer.get("self") is not True:
        subjects.append(_subject(organizer, "organizer"))
    return Record(
        id=str(item["id"]),
        customer_id=ctx.customer_id,
        connection_id=ctx.connection_id,
        provider=ctx.provider,
        resource=ctx.resource,
        visibility=visibility,
        subjects=tuple(s for s in subjects if s is not None),
        data=data,
        occurred_at=_datetime(_when(item.get("start"))),
        extra={"provider_visibility": str(item.get("visibility", "default"))},
    )


def _is_party(item: JSONObject) -> bool:
    if _mapping(item.get("organizer")).get("self") is True:
        return True
    return any(_mapping(a).get("self") is True for a in _list(item.get("attendees")))


def _subject(person: Mapping[str, Any], role: str) -> Subject | None:
    identifiers: list[Identifier] = []
    raw = person.get("email")
    if isinstance(raw, str):
        with contextlib.suppress(InvalidIdentifier):  # unreadable: it cannot match anyone
            identifiers.append(email_identifier(raw))
    return Subject(tuple(identifiers), None, role) if identifiers else None


def _email(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        return email_identifier(raw).value
    except InvalidIdentifier:
        return None


def _when(value: object) -> str | None:
    """``start``/``end``: ``dateTime`` for timed events, ``date`` for all-day ones."""
    moment = _mapping(value)
    found = moment.get("dateTime") or moment.get("date")
    return str(found) if found else None


def _datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# Calendar "Handle API errors": 401 authError; 403/429 usageLimits reasons; daily
# quota reasons last until the quota day ends, so retrying now cannot help.
ERRORS = ErrorTable(
    api=(
        ErrorRule(
            kind=ErrorKind.REAUTH,
            path=("error", "errors", "reason"),
            values=frozenset({"authError"}),
            statuses=frozenset({401}),
        ),
        ErrorRule(
            kind=ErrorKind.USAGE_CAPPED,
            path=("error", "errors", "reason"),
            values=frozenset({"dailyLimitExceeded", "quotaExceeded"}),
            statuses=frozenset({403, 429}),
        ),
        ErrorRule(
            kind=ErrorKind.RETRY_LATER,
            path=("error", "errors", "reason"),
            values=frozenset({"rateLimitExceeded", "userRateLimitExceeded"}),
            statuses=frozenset({403, 429}),
        ),
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error", "errors", "reason"),
            values=frozenset({"forbidden", "insufficientPermissions", "fullSyncRequired"}),
        ),
    ),
    token=(
        # RFC 6749 §5.2: a wrong client is the operator's problem, not the customer's.
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error",),
            values=frozenset({"invalid_client", "unauthorized_client"}),
        ),
    ),
)

PROVIDER = Provider(
    name="google",
    display_name="Google",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            issuer="https://accounts.google.com",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",  # noqa: S106 - a URL, not a secret
            # Revoking the refresh token also revokes its access tokens (web-server guide).
            revoke_url="https://oauth2.googleapis.com/revoke",
            userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
            jwks_url="https://www.googleapis.com/oauth2/v3/certs",
            api_base_url="https://www.googleapis.com",
        ),
        # The narrowest read-only scope that lists the primary calendar's events.
        scopes=("openid", "email", "profile", CALENDAR_SCOPE),
        client_auth=ClientAuth.CLIENT_SECRET_BASIC,
        oidc=True,
        rotates_refresh_token=False,  # the refresh answer has no new refresh_token: keep it
        # A refresh token only with offline access; prompt=consent to get one on re-consent.
        extra_authorize_params={"access_type": "offline", "prompt": "consent"},
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/oauth2/v3/userinfo",  # the userinfo claims, on the API host
            items_path=(),
            normalize=normalize_profile,
            description="the signed-in Google account's own profile",
        ),
        "calendar.events": Resource(
            name="calendar.events",
            path="/calendar/v3/calendars/primary/events",
            items_path=("items",),
            normalize=normalize_event,
            query={"singleEvents": "true"},
            pagination=Pagination(
                style=PageStyle.PAGE_TOKEN,
                token_param="pageToken",  # noqa: S106 - a parameter name, not a secret
                token_path=("nextPageToken",),
                limit_param="maxResults",
                max_limit=250,
            ),
            description="events on the linked account's primary calendar",
        ),
    },
    account_from_claims=oidc_account,
    scope_descriptions={
        "openid": "know who you are when you sign in",
        "email": "see your email address",
        "profile": "see your name and profile picture",
        CALENDAR_SCOPE: "see the events on the calendars you own (read only)",
    },
    errors=ERRORS,
)

__all__ = ["EVENT_VISIBILITY", "PROVIDER", "event_visibility", "normalize_event"]
