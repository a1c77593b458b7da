"""Microsoft: identity platform v2 sign-in (any tenant) and Microsoft Graph calendar events.

Endpoints and the issuer template from "OpenID Connect on the Microsoft identity
platform"; refresh-token rolling from "Refresh tokens in the Microsoft identity
platform"; AADSTS codes from "Microsoft Entra authentication and authorization
error codes"; paging from "Paging Microsoft Graph data"; event fields from the
Graph ``event`` resource (https://learn.microsoft.com/graph/api/resources/event).
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
    Account,
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

# "common" lets an admin of any work or school tenant (or a personal account) sign in;
# the ID token then names its own tenant, which the issuer template checks.
AUTHORITY = "https://login.microsoftonline.com/common"

# Graph ``sensitivity``, read together with whether the linked mailbox is a party
# (``isOrganizer``, or a ``responseStatus`` other than "none"). A party got the
# attendees' addresses from them (an invitation it sent or received). "personal",
# "private" and "confidential" are the organizer limiting who sees the details:
# dropped. An event the mailbox is no party to is not known to be public.
EVENT_SENSITIVITY: Mapping[tuple[str, bool], Visibility] = {
    ("normal", True): Visibility.DIRECT,
    ("normal", False): Visibility.UNKNOWN,
    ("personal", True): Visibility.PRIVATE,
    ("personal", False): Visibility.PRIVATE,
    ("private", True): Visibility.PRIVATE,
    ("private", False): Visibility.PRIVATE,
    ("confidential", True): Visibility.RESTRICTED,
    ("confidential", False): Visibility.RESTRICTED,
}
_PARTY_RESPONSES = frozenset(
    {"organizer", "accepted", "tentativelyAccepted", "declined", "notResponded"}
)

CONTENT = "user.content.private"
EMAIL = "user.contact.email"


def event_visibility(item: JSONObject) -> Visibility:
    """The visibility of one Graph event; missing or unknown sensitivity is UNKNOWN."""
    sensitivity = item.get("sensitivity")
    if not isinstance(sensitivity, str):
        return Visibility.UNKNOWN
    response = _mapping(item.get("responseStatus")).get("response")
    party = item.get("isOrganizer") is True or response in _PARTY_RESPONSES
    return EVENT_SENSITIVITY.get((sensitivity, party), Visibility.UNKNOWN)


def normalize_event(item: JSONObject, ctx: NormalizeContext) -> Record:
    """One ``/me/events`` item; the organizer and attendees are the End Users."""
    visibility = event_visibility(item)
    if ctx.drops(visibility):
        return without_content(ctx, id=str(item["id"]), visibility=visibility)
    organizer = _mapping(_mapping(item.get("organizer")).get("emailAddress"))
    attendees = [_mapping(_mapping(a).get("emailAddress")) for a in _list(item.get("attendees"))]
    entries: list[tuple[str, JSONValue, str]] = [
        ("subject", item.get("subject"), CONTENT),
        ("body_preview", item.get("bodyPreview"), CONTENT),
        ("location", _mapping(item.get("location")).get("displayName"), "user.location.imprecise"),
        ("start", _mapping(item.get("start")).get("dateTime"), "system.operations"),
        ("end", _mapping(item.get("end")).get("dateTime"), "system.operations"),
        ("is_cancelled", item.get("isCancelled"), "system.operations"),
        ("organizer_email", _email(organizer.get("address")), EMAIL),
        ("organizer_name", organizer.get("name"), "user.name"),
        ("attendee_emails", [e for a in attendees if (e := _email(a.get("address")))] or None,
         EMAIL),
        ("attendee_names", [n for a in attendees if (n := a.get("name"))] or None, "user.name"),
    ]  # fmt: skip
    data = {
        name: Field(value, category)
        for name, value, category in entries
        if value is not None and value != ""
    }
    subjects = [_subject(a, "attendee") for a in attendees]
    if item.get("isOrganizer") is not True:
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
        occurred_at=_datetime(_mapping(item.get("start")).get("dateTime")),
        extra={"provider_visibility": _json_str(item.get("sensitivity"))},
    )


def microsoft_account(claims: JSONObject, issuer: str) -> Account:
    """``sub`` scoped by the token's own tenant issuer, so tenants never share an account."""
    account = oidc_account(claims, issuer)
    tenant_issuer = claims.get("iss")
    if isinstance(tenant_issuer, str) and tenant_issuer:
        return Account(subject=account.subject, name=account.name, issuer=tenant_issuer)
    return account


def _subject(person: Mapping[str, Any], role: str) -> Subject | None:
    identifiers: list[Identifier] = []
    raw = person.get("address")
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


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _json_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# Token endpoint: Entra adds numeric ``error_codes`` (AADSTS…) to the RFC 6749 error.
_CUSTOMER_MUST_SIGN_IN = frozenset(
    {
        50076,  # MFA required
        50079,  # MFA registration required
        50158,  # external security challenge (Conditional Access)
        50173,  # grant revoked after a credential change
        65001,  # consent missing or withdrawn
        70008,  # refresh token or code expired
        700082,  # refresh token expired from inactivity
        700084,  # SPA refresh token past its 24 h
    }
)
_OPERATOR_MUST_FIX = frozenset(
    {
        700016,  # application not found in the tenant
        7000215,  # invalid client secret
        7000222,  # client secret expired
    }
)

ERRORS = ErrorTable(
    api=(
        # Graph: "Access token has expired or is not yet valid."
        ErrorRule(
            kind=ErrorKind.REAUTH,
            path=("error", "code"),
            values=frozenset({"InvalidAuthenticationToken"}),
            statuses=frozenset({401}),
        ),
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error", "code"),
            values=frozenset({"ErrorAccessDenied", "Authorization_RequestDenied"}),
            statuses=frozenset({403}),
        ),
    ),
    token=(
        ErrorRule(kind=ErrorKind.PERMANENT, path=("error_codes",), values=_OPERATOR_MUST_FIX),
        ErrorRule(kind=ErrorKind.REAUTH, path=("error_codes",), values=_CUSTOMER_MUST_SIGN_IN),
        ErrorRule(
            kind=ErrorKind.REAUTH,
            path=("error",),
            values=frozenset({"interaction_required", "consent_required", "login_required"}),
        ),
        ErrorRule(
            kind=ErrorKind.RETRY_LATER,
            path=("error",),
            values=frozenset({"temporarily_unavailable"}),
        ),
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error",),
            values=frozenset({"invalid_client", "unauthorized_client"}),
        ),
    ),
)

PROVIDER = Provider(
    name="microsoft",
    display_name="Microsoft",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            # The v2.0 issuer carries the tenant id: a template, filled from ``tid``.
            issuer="https://login.microsoftonline.com/{tenantid}/v2.0",
            authorize_url=f"{AUTHORITY}/oauth2/v2.0/authorize",
            token_url=f"{AUTHORITY}/oauth2/v2.0/token",
            # No RFC 7009 endpoint: disconnecting deletes our tokens; the admin removes
            # the app's consent in My Apps to end the grant at Microsoft. (Microsoft Q&A
            # 993951, answered by Microsoft: the way is Graph "user: revokeSignInSessions",
            # which ends every app's sessions and needs User.ReadWrite.All-class
            # permissions, far beyond this read-only grant.)
            revoke_url=None,
            userinfo_url="https://graph.microsoft.com/oidc/userinfo",
            jwks_url=f"{AUTHORITY}/discovery/v2.0/keys",
            api_base_url="https://graph.microsoft.com",
        ),
        # Calendars.ReadBasic: events without body or attachments, the least calendar right.
        # No User.Read: nothing here reads Graph /me; the account comes from the ID token and
        # the profile from /oidc/userinfo, whose permissions are openid (required), profile
        # and email ("Microsoft identity platform UserInfo endpoint", Permissions). The
        # access token is a Graph one through Calendars.ReadBasic, as userinfo needs.
        scopes=("openid", "profile", "email", "offline_access", "Calendars.ReadBasic"),
        # "OAuth 2.0 authorization code flow" (Microsoft identity platform), Redeem a code:
        # the example sends client_secret in the body, and "the Basic auth pattern of
        # instead providing credentials in the Authorization header, per RFC 6749 is also
        # supported". Both are documented; the body is the form every example uses.
        client_auth=ClientAuth.CLIENT_SECRET_POST,
        oidc=True,
        rotates_refresh_token=True,  # every refresh returns a new one; the old is discarded
        issuer_claims={"tenantid": "tid"},
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/oidc/userinfo",
            items_path=(),
            normalize=normalize_profile,
            description="the signed-in Microsoft account's own profile",
        ),
        "calendar.events": Resource(
            name="calendar.events",
            path="/v1.0/me/events",
            items_path=("value",),
            normalize=normalize_event,
            pagination=Pagination(
                style=PageStyle.NEXT_LINK,
                token_path=("@odata.nextLink",),
                limit_param="$top",
                max_limit=100,
            ),
            description="events in the linked mailbox's calendar",
        ),
    },
    account_from_claims=microsoft_account,
    scope_descriptions={
        "openid": "know who you are when you sign in",
        "profile": "see your name",
        "email": "see your email address",
        "offline_access": "stay connected when you are not signed in",
        "Calendars.ReadBasic": "see your calendar events, without their bodies (read only)",
    },
    errors=ERRORS,
)

__all__ = [
    "EVENT_SENSITIVITY",
    "PROVIDER",
    "event_visibility",
    "microsoft_account",
    "normalize_event",
]
