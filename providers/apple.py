"""Sign in with Apple: identity only (Apple offers no content API).

From Apple's Sign in with Apple REST API: "Generate and validate tokens"
(client secret as an ES256 JWT), "Revoke tokens" (``/auth/revoke``),
"Request an authorization to the Sign in with Apple server" (``response_mode=form_post``
is required when ``name`` or ``email`` is asked for; the ``user`` JSON with the
name arrives only on the first authorization) and "ErrorResponse".

Apple has no userinfo endpoint: what the gateway knows of the account is the
ID token's claims ("Authenticating users with Sign in with Apple", the
``id_token`` payload: ``sub``, ``email``, ``email_verified``, ``is_private_email``,
``real_user_status``) and the first-consent ``user`` JSON. Both are kept at
connect time (``KEPT_CLAIMS``; providers.base, ``kept_claims``) and the
``profile`` resource is served from them. The name is sticky: a later sign-in
carries no ``user``, so the name from the first consent stays. The email is not:
Apple's DTS engineers (developer forums, threads 662175 and 751085, quoting
"Authenticating users with Sign in with Apple") say the identity token carries
``email`` on every later sign-in too, and that ``email_verified`` and
``is_private_email`` are a string ("true") or a boolean.

Server-to-server notifications (``NOTIFICATIONS``; providers.base, ``notifications``).
Apple's "Processing changes for Sign in with Apple accounts" and "Enabling
server-to-server notifications" (Account Help), with the shapes DTS engineers and
developers report on the developer forums (threads 655485, 809509, 811848):
Apple POSTs JSON ``{"payload": "<JWS>"}`` to the one endpoint registered for the
primary App ID, with no other authentication. The JWS is signed with the same
keys as the ID tokens (``/auth/keys``, ``alg`` from its header, RS256 today); its
claims are ``iss`` (https://appleid.apple.com), ``aud`` (the client id: the way to
tell apps sharing one endpoint apart), ``iat``, ``exp``, ``jti`` and ``events``,
which arrives as a *string* of JSON (an object is accepted too) holding ``type``,
``sub``, ``event_time`` (milliseconds) and, for the email events, ``email`` and
``is_private_email``. The types: ``email-disabled`` / ``email-enabled`` (the End
User turned Hide My Email forwarding off or on), ``consent-revoked`` (they stopped
using their Apple Account with the app: its credentials are no longer valid) and
``account-delete`` (they asked Apple to delete the Apple Account for good; the
article's current text spells it ``account-deleted``, so both are read).

Delivery (https://developer.apple.com/documentation/signinwithapple/processing-changes-for-sign-in-with-apple-accounts):
Apple documents no retry. Asked whether Apple retries a delivery the server
failed to take, a DTS engineer answered that each event "is expected to be
delivered once", with duplicates possible (forums, thread 809509): so the
gateway acts on the first delivery and a duplicate must change nothing
(gateway/provider_notifications.py). The notification JWT carries its own
``exp``: one day after ``iat`` in every sample developers report (forums,
thread 655485: exp - iat = 86400). An expired one is refused (RFC 7519
§4.1.4), so a notification is usable for a day at most; ``max_age`` says the
same, rather than a longer window the ``exp`` check would never let through.

Tokens (https://developer.apple.com/documentation/signinwithapple/verifying-a-user):
the ID token is checked as Apple lists (its signature with Apple's public
key, ``nonce``, ``iss``, ``aud``, and the time before ``exp``; Apple states no
lifetime for it, so gateway.connect.idtoken's own freshness bound on ``iat``
applies). The refresh token "may" be verified "up to once a day" and Apple's
servers may throttle more frequent calls; the gateway never refreshes an Apple
grant at all: Apple has no API to call, so the access token (``expires_in``
3600) is never used after linking, and the ``profile`` is served from the kept
claims without asking Apple anything (gateway.records.service).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from policies.vocabulary import Record
from providers.base import (
    Account,
    ClientAuth,
    ClientSecretJWT,
    Endpoints,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    JSONObject,
    KeptClaims,
    NormalizeContext,
    NotificationEvent,
    Notifications,
    NotificationSigner,
    OAuthSettings,
    Provider,
    ProviderNotification,
    Resource,
)
from providers.oidc import own_account_record

APPLE_AUDIENCE = "https://appleid.apple.com"
MAX_NAME_LENGTH = 200

# ``real_user_status`` (id_token payload): Apple's guess whether a real person signed in.
REAL_USER_STATUS = {0: "unsupported", 1: "unknown", 2: "likely_real"}

# Kept claims -> data categories. ``email_verified`` and ``is_private_email`` arrive
# as the string "true"/"false" or a boolean; the record carries booleans.
_PROFILE_FIELDS = {
    "sub": "user.unique_id",
    "name": "user.name",
    "given_name": "user.name",
    "family_name": "user.name",
    "email": "user.contact.email",
    "email_verified": "user.contact.email",
    "is_private_email": "user.contact.email",  # true: an Apple private relay address
    "real_user_status": "user.behavior",
    "email_forwarding": "user.contact.email",  # "enabled"/"disabled": from the email events
}

# ``events.type`` -> what it means for the connections of that ``sub``.
NOTIFICATION_EVENTS = {
    "consent-revoked": NotificationEvent.GRANT_ENDED,
    "account-delete": NotificationEvent.ACCOUNT_DELETED,
    "account-deleted": NotificationEvent.ACCOUNT_DELETED,  # the article's current spelling
    "email-disabled": NotificationEvent.CLAIMS_CHANGED,
    "email-enabled": NotificationEvent.CLAIMS_CHANGED,
}


def callback_name(params: Mapping[str, str]) -> dict[str, str]:
    """The name in Apple's first-consent ``user`` form field, as OIDC claim names.

    The field is not signed, so it only ever names the account for people; the
    account's identity stays the ID token's ``sub``. Its ``email`` is ignored:
    the ID token's signed ``email`` is the one kept.
    """
    raw = params.get("user")
    if not raw:
        return {}
    try:
        user = json.loads(raw)
    except ValueError:
        return {}
    name = user.get("name") if isinstance(user, dict) else None
    if not isinstance(name, dict):
        return {}
    claims: dict[str, str] = {}
    for field_name, claim in (("firstName", "given_name"), ("lastName", "family_name")):
        value = name.get(field_name)
        if isinstance(value, str) and value.strip():
            claims[claim] = value.strip()[:MAX_NAME_LENGTH]
    full = " ".join(claims[c] for c in ("given_name", "family_name") if c in claims)
    if full:
        claims["name"] = full[:MAX_NAME_LENGTH]
    return claims


def apple_account(claims: JSONObject, issuer: str) -> Account:
    """The account is ``sub``; it is named by the first-consent name, never the email.

    The ID token's ``email`` (often a private relay address) is kept sealed with
    the other claims; the connection's display name is stored in clear, so it
    falls back to ``sub`` until the first consent's name arrives.
    """
    subject = str(claims["sub"])
    return Account(subject=subject, name=subject, issuer=issuer)


def account_from_callback(account: Account, params: Mapping[str, str]) -> Account:
    """Use the name Apple posts on first consent (``user`` form field) as the account name.

    Later sign-ins carry no ``user``; the gateway then names the account from
    the name kept at the first consent (``KEPT_CLAIMS``, sticky ``name``).
    """
    name = callback_name(params).get("name")
    return replace(account, name=name) if name else account


KEPT_CLAIMS = KeptClaims(
    id_token=("sub", "email", "email_verified", "is_private_email", "real_user_status"),
    from_callback=callback_name,
    sticky=("name", "given_name", "family_name"),
)


def _flag(value: object) -> bool | None:
    """Apple sends these booleans as JSON booleans or as the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return None


def normalize_profile(item: JSONObject, ctx: NormalizeContext) -> Record:
    """The linked Apple account's own claims, as kept at connect time.

    Like Google's and Microsoft's ``profile`` (providers.oidc.normalize_profile),
    it is the account holder's own identity, given to the customer by its holder
    when they consented: ``direct``.
    """
    values: dict[str, Any] = dict(item)
    for flag in ("email_verified", "is_private_email"):
        if flag in values:
            values[flag] = _flag(values[flag])
    if "real_user_status" in values:
        values["real_user_status"] = REAL_USER_STATUS.get(values["real_user_status"])
    return own_account_record(values, ctx, _PROFILE_FIELDS)


def read_notification(claims: JSONObject, deletion: bool) -> ProviderNotification:
    """A verified notification JWT's claims -> which account, which event.

    ``events`` is a JSON string (an object is read as well). The email events
    carry the address Apple now forwards for (or stops forwarding for) and whether
    it is a relay address; they replace what is kept, like a new sign-in would.
    ``events.event_time`` (milliseconds) is when the change happened: the gateway
    applies an email event only if it is newer than the one last applied, so a
    late or replayed email-enabled cannot undo a newer email-disabled.
    """
    events = claims.get("events")
    if isinstance(events, str):
        events = json.loads(events)  # ValueError on garbage, as the hook promises
    if not isinstance(events, dict):
        raise ValueError("events is not an object")
    kind, subject, issued_at = events.get("type"), events.get("sub"), claims.get("iat")
    if not isinstance(subject, str) or not subject:
        raise ValueError("events.sub is missing")
    if not isinstance(kind, str) or kind not in NOTIFICATION_EVENTS:
        raise ValueError("events.type is not one Apple documents")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        raise ValueError("iat is missing")
    event_time = events.get("event_time")
    if event_time is not None and (
        isinstance(event_time, bool) or not isinstance(event_time, int | float)
    ):
        raise ValueError("events.event_time is not a number")
    changed: dict[str, Any] = {}
    if NOTIFICATION_EVENTS[kind] is NotificationEvent.CLAIMS_CHANGED:
        changed["email_forwarding"] = "enabled" if kind == "email-enabled" else "disabled"
        if isinstance(events.get("email"), str) and events["email"]:
            changed["email"] = events["email"]
        if _flag(events.get("is_private_email")) is not None:
            changed["is_private_email"] = _flag(events["is_private_email"])
    return ProviderNotification(
        subject=subject,
        event=NOTIFICATION_EVENTS[kind],
        kind=kind,
        issued_at=float(issued_at),
        event_time=None if event_time is None else event_time / 1000,
        claims=changed,
    )


NOTIFICATIONS = Notifications(
    signed_by=NotificationSigner.PROVIDER_KEYS,
    message_field="payload",
    read=read_notification,
    algorithms=("RS256",),
    # The JWT's own exp: one day after iat in the samples developers report (module
    # docstring); a longer window would never be reached past the exp check.
    max_age=24 * 3600,
)

ERRORS = ErrorTable(
    token=(
        # ErrorResponse: invalid_client is a bad client-secret JWT (team, key or sub):
        # the operator must fix the configuration; the customer's grant is fine.
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error",),
            values=frozenset({"invalid_client", "unauthorized_client"}),
        ),
    ),
)

PROVIDER = Provider(
    name="apple",
    display_name="Apple",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            issuer="https://appleid.apple.com",
            authorize_url="https://appleid.apple.com/auth/authorize",
            token_url="https://appleid.apple.com/auth/token",  # noqa: S106 - a URL, not a secret
            revoke_url="https://appleid.apple.com/auth/revoke",
            jwks_url="https://appleid.apple.com/auth/keys",
            api_base_url="https://appleid.apple.com",  # no API; nothing is fetched from it
        ),
        scopes=("name", "email"),
        client_auth=ClientAuth.SIGNED_SECRET_POST,
        client_secret_jwt=ClientSecretJWT(audience=APPLE_AUDIENCE, algorithm="ES256"),
        oidc=True,
        rotates_refresh_token=False,  # a refresh returns no new refresh token
        response_mode="form_post",
        id_token_algorithms=("RS256",),
    ),
    # Apple has no userinfo or content endpoint: the profile is the claims kept at linking.
    resources={
        "profile": Resource(
            name="profile",
            path="",
            items_path=(),
            normalize=normalize_profile,
            from_kept_claims=True,
            description="the linked Apple account's own claims, kept when it was linked",
        ),
    },
    account_from_claims=apple_account,
    account_from_callback=account_from_callback,
    kept_claims=KEPT_CLAIMS,
    notifications=NOTIFICATIONS,
    scope_descriptions={
        "name": "see your name (sent once, when you first agree)",
        "email": "see your email address, or an Apple relay address",
    },
    errors=ERRORS,
)

__all__ = [
    "KEPT_CLAIMS",
    "NOTIFICATIONS",
    "PROVIDER",
    "account_from_callback",
    "apple_account",
    "callback_name",
    "normalize_profile",
    "read_notification",
]
