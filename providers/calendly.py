"""Calendly API v2 through OAuth 2.0: the linked user, their scheduled events and invitees.

OAuth (developer.calendly.com, "Creating an OAuth app" and "Get Access
Token"): web (confidential) apps authenticate at ``auth.calendly.com/oauth/token``
with HTTP Basic; PKCE S256 is recommended for every app and sent. Access tokens
last two hours; refresh tokens are single use with rotation ("How to handle
single-use refresh tokens"): every refresh revokes the token used and returns a
new one, which must overwrite the stored one. Revocation is
``POST /oauth/revoke`` with ``client_id``, ``client_secret`` and ``token`` in the
form body ("Revoke Access/Refresh Token"). There is no OIDC; ``GET /users/me``
identifies the user, whose URI is the connection's account id.

Scopes ("Scopes"), read-only and least: ``users:read`` (``/users/me``) and
``scheduled_events:read`` (events and their invitees).

Errors: 401 ``{"title": "Unauthenticated", ...}`` is a dead token; 429 carries
``X-RateLimit-Reset`` as *seconds until* the window reopens (usually 60), not
an epoch. Paging: ``pagination.next_page_token`` sent back as ``page_token``
with ``count``; a null token is the last page.
"""

from __future__ import annotations

from collections.abc import Mapping

from policies import Record, Visibility
from providers.assembly import (
    EMAIL,
    NAME,
    OPERATIONS,
    PRIVATE_CONTENT,
    USER_ID,
    fields,
    listed,
    mapping,
    present,
    record,
    sms_phone,
    subject,
    without_content,
)
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
    Param,
    Provider,
    Resource,
    ValuesFrom,
)

AUTH = "https://auth.calendly.com"
API = "https://api.calendly.com"

SCOPES = ("users:read", "scheduled_events:read")

# Calendly has no per-record visibility flag. A scheduled event and its invitees
# exist because the invitee booked with the customer: that is data directly
# provided to the customer. ``status`` says whether the booking still stands; a
# cancelled one stays direct (its cancellation is part of what was provided).
# An event without a status (only its URI) or with an unknown one is unknown.
EVENT_STATUS: Mapping[str, Visibility] = {
    "active": Visibility.DIRECT,
    "canceled": Visibility.DIRECT,
}
INVITEE_STATUS: Mapping[str, Visibility] = {
    "active": Visibility.DIRECT,
    "canceled": Visibility.DIRECT,
}
OWN_PROFILE = Visibility.DIRECT

_PAGES = Pagination(
    style=PageStyle.PAGE_TOKEN,
    token_param="page_token",  # noqa: S106 - a parameter name
    token_path=("pagination", "next_page_token"),
    limit_param="count",
    max_limit=100,
)

# "Rate Limits": X-RateLimit-Reset is the number of seconds until the window
# reopens ("typically 60 seconds"), not an epoch; 60 is the wait when it is absent.
RATE_LIMIT_WAIT = 60.0
RATE_LIMIT_RESET = "X-RateLimit-Reset"

ERRORS = ErrorTable(
    api=(
        ErrorRule(
            kind=ErrorKind.RETRY_LATER,
            statuses=frozenset({429}),
            retry_after=RATE_LIMIT_WAIT,
            wait_header=RATE_LIMIT_RESET,
        ),
        ErrorRule(kind=ErrorKind.REAUTH, statuses=frozenset({401})),
    ),
    token=(ErrorRule(kind=ErrorKind.REAUTH, path=("error",), values=frozenset({"invalid_grant"})),),
)


def normalize_profile(body: JSONObject, ctx: NormalizeContext) -> Record:
    """``/users/me``: the Calendly user who linked the account (the customer's own staff)."""
    user = mapping(body.get("resource"))
    data = fields(
        ("uri", user.get("uri"), USER_ID),
        ("name", user.get("name"), NAME),
        ("email", user.get("email"), EMAIL),
        ("scheduling_url", user.get("scheduling_url"), OPERATIONS),
        ("timezone", user.get("timezone"), OPERATIONS),
        ("current_organization", user.get("current_organization"), OPERATIONS),
    )
    return record(
        ctx,
        id=user.get("uri"),
        visibility=OWN_PROFILE,
        subjects=[
            subject(ctx, role="account_holder", user_id=user.get("uri"), email=user.get("email"))
        ],
        data=data,
    )


def normalize_event(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/scheduled_events``: the linked user's booked meetings."""
    status = item.get("status")
    visibility = (
        EVENT_STATUS.get(status, Visibility.UNKNOWN)
        if isinstance(status, str)
        else Visibility.UNKNOWN
    )
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("uri"), visibility=visibility)
    guests = [mapping(g) for g in listed(item.get("event_guests"))]
    hosts = [mapping(m) for m in listed(item.get("event_memberships"))]
    cancellation = mapping(item.get("cancellation"))
    data = fields(
        ("name", item.get("name"), OPERATIONS),
        ("status", status, OPERATIONS),
        ("start_time", item.get("start_time"), PRIVATE_CONTENT),
        ("end_time", item.get("end_time"), PRIVATE_CONTENT),
        ("location", item.get("location"), PRIVATE_CONTENT),
        # Hosts are the customer's own Calendly users, not End Users.
        ("host_emails", present(h.get("user_email") for h in hosts), OPERATIONS),
        ("guest_emails", present(g.get("email") for g in guests), EMAIL),
        ("cancellation_reason", cancellation.get("reason"), PRIVATE_CONTENT),
        ("canceled_by", cancellation.get("canceled_by"), NAME),
    )
    return record(
        ctx,
        id=item.get("uri"),
        visibility=visibility,
        subjects=[subject(ctx, role="guest", email=g.get("email")) for g in guests],
        data=data,
        occurred_at=item.get("start_time"),
        extra={"status": status},
    )


def normalize_invitee(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/scheduled_events/{uuid}/invitees``: who booked, with what they told the host."""
    status = item.get("status")
    visibility = (
        INVITEE_STATUS.get(status, Visibility.UNKNOWN)
        if isinstance(status, str)
        else Visibility.UNKNOWN
    )
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("uri"), visibility=visibility)
    answers = [
        {"question": str(qa.get("question", "")), "answer": str(qa.get("answer", ""))}
        for qa in map(mapping, listed(item.get("questions_and_answers")))
    ]
    cancellation = mapping(item.get("cancellation"))
    data = fields(
        ("name", item.get("name"), NAME),
        ("email", item.get("email"), EMAIL),
        ("timezone", item.get("timezone"), "user.location.imprecise"),
        ("status", status, OPERATIONS),
        ("event", item.get("event"), OPERATIONS),
        ("questions_and_answers", answers, PRIVATE_CONTENT),
        ("cancellation_reason", cancellation.get("reason"), PRIVATE_CONTENT),
        ("rescheduled", item.get("rescheduled"), OPERATIONS),
    )
    reminder = item.get("text_reminder_number")
    if isinstance(reminder, str) and reminder:
        data["text_reminder_number"] = sms_phone(reminder)
    who = subject(
        ctx,
        role="invitee",
        email=item.get("email"),
        phone=reminder if isinstance(reminder, str) else None,
    )
    return record(
        ctx,
        id=item.get("uri"),
        visibility=visibility,
        subjects=[who],
        data=data,
        occurred_at=item.get("created_at"),
        extra={"status": status},
    )


def calendly_account(body: JSONObject, issuer: str) -> Account:
    """``/users/me`` answers ``{"resource": {"uri", "name", "email", ...}}``."""
    user = mapping(body.get("resource"))
    uri = user.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ValueError("the /users/me answer carries no uri")
    name = user.get("email") or user.get("name") or uri
    return Account(subject=uri, name=str(name), issuer=issuer)


PROVIDER = Provider(
    name="calendly",
    display_name="Calendly",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            authorize_url=f"{AUTH}/oauth/authorize",
            token_url=f"{AUTH}/oauth/token",
            revoke_url=f"{AUTH}/oauth/revoke",
            userinfo_url=f"{API}/users/me",
            api_base_url=API,
        ),
        scopes=SCOPES,
        client_auth=ClientAuth.CLIENT_SECRET_BASIC,
        rotates_refresh_token=True,
        revoke_client_auth=ClientAuth.CLIENT_SECRET_POST,
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/users/me",
            normalize=normalize_profile,
            items_path=(),
            description="The linked Calendly user.",
        ),
        "scheduled_events": Resource(
            name="scheduled_events",
            # The linked user's URI is the account id; httpx encodes it into the query.
            path="/scheduled_events?user={account_id}",
            normalize=normalize_event,
            items_path=("collection",),
            query={"sort": "start_time:desc"},
            pagination=_PAGES,
            description="Meetings booked with the linked user, active and canceled.",
        ),
        "invitees": Resource(
            name="invitees",
            path="/scheduled_events/{event_uuid}/invitees",
            normalize=normalize_invitee,
            items_path=("collection",),
            params=(
                Param(
                    name="event_uuid",
                    pattern=r"[A-Za-z0-9-]{1,64}",
                    # An event's record id is its URI, .../scheduled_events/{uuid}.
                    values_from=ValuesFrom(
                        resource="scheduled_events", capture=r".*/scheduled_events/([^/?#]+)"
                    ),
                ),
            ),
            pagination=_PAGES,
            description="Who booked one of the linked user's events.",
        ),
    },
    account_from_claims=calendly_account,
    errors=ERRORS,
    scope_descriptions={
        "users:read": "See your Calendly profile",
        "scheduled_events:read": "See your scheduled events and who booked them",
    },
)
