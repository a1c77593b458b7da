"""What Facebook and Instagram share: the Graph API's errors, paging and tokens.

Both speak the Graph API (graph.facebook.com, graph.instagram.com), so both
answer errors with the same object and page with the same cursors:

* Errors (Graph API "Handling Errors"): ``{"error": {"message", "type",
  "code", "error_subcode", "fbtrace_id"}}``, mostly with HTTP 400. Code 190
  (``OAuthException``, with subcodes 458 app removed, 459 checkpoint, 460
  password changed, 463 expired, 464 unconfirmed, 467 invalid) and 102 mean
  the token is dead: only the customer can fix it by linking again. Codes 4
  (app), 17 (user), 32 (Page), 613 (custom) and 80001-80014 (business use
  case) are rate limits, reported with ``X-App-Usage`` /
  ``X-Business-Use-Case-Usage`` headers rather than ``Retry-After``; codes 1
  and 2 are transient; 10 and 200-299 are missing permissions.
* Paging (Graph API "Paginated Results"): ``paging.cursors.after`` and
  ``paging.next``; the *absence* of ``paging.next`` is the documented end, and
  a page may be empty while still carrying one, so the next link is followed,
  never the bare ``after`` cursor.
* No refresh tokens: a short-lived user token is traded for a long-lived one.
* When the End User removes the app at Meta, Meta POSTs a form with one field,
  ``signed_request``, to the app's Deauthorize Callback URL; when they also ask
  for their data to be deleted, to its Data Deletion Request Callback URL
  (developers.facebook.com, "Data Deletion Request Callback", Facebook Login
  "Deauthorize Callback"). A signed request is ``<sig>.<payload>``, both
  base64url without padding: ``sig`` is HMAC-SHA256 of the *encoded* payload
  with the app secret, and the payload is JSON with ``algorithm``
  ("HMAC-SHA256"), ``issued_at`` (seconds), ``user_id`` (the app-scoped id the
  connection is keyed by) and sometimes ``user`` (country, locale), which is not
  read (:func:`open_signed_request`, :func:`read_signed_request`). The deletion
  callback must answer JSON ``{"url": "<status page>", "confirmation_code":
  "<code>"}``; the page at ``url`` tells the End User, in words, what became of
  the request (gateway/provider_notifications.py). Source:
  https://developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback/
  (the callback is called when a user removes the app and asks for deletion;
  the signed request carries an app-scoped user id; the app acknowledges with
  a link and a confirmation code). The page says nothing of retries: none is
  assumed, so the request is acted on, durably, before it is answered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

from providers.base import (
    Account,
    ApiVersion,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    JSONObject,
    NotificationEvent,
    Notifications,
    NotificationSigner,
    PageStyle,
    Pagination,
    ProviderNotification,
)

# The Graph API version in every Graph URL path (graph.facebook.com, graph.instagram.com
# and the Facebook Login dialog): the default; an operator moves it with ``api_version``
# in [providers.facebook] / [providers.instagram] (gateway.config), so a sunset does not
# wait for a release. Meta's "Versions" changelog
# (https://developers.facebook.com/docs/graph-api/changelog/versions/, seen 2026-11-29):
# v21.0 is available until January 21, 2027, v25.0 until July 29, 2028, and v26.0
# (July 29, 2026) until a date not yet set; so far each version has stayed two years
# past the next one's release. The newer changelog page
# (developers.facebook.com/documentation/development/graph-api/changelog, "Updated:
# Oct 29, 2026", seen 2026-11-29) lists one more version, introduced November 4, 2026
# (v27.0; the Marketing API's version table names it), also without an end date, and
# the references' Graph API Explorer samples now show v27.0. v26.0 stays the default:
# supported, and the one whose changelog was checked against what is read here (below);
# an operator can move to v27.0 with ``api_version`` once its changelog is checked too.
# (v21.0, which the shared providers reference names, ends January 21, 2027.)
# What was checked for the endpoints, fields, scopes, paging and callbacks these modules
# use (Page feed, comments, conversations; /me, /me/accounts, /me/permissions, the token
# exchanges; IG media, comments, conversations): the v22.0 and v26.0 changelogs, the
# v22.0-v26.0 release posts, the Instagram Platform changelog through October 2026 and
# the current references (Page Post, Conversation messages, IG Media, IG Comment, Get
# Conversations). None renames or removes anything read here. v22.0 retired the legacy
# Instagram User/Media/Comment objects in favour of the IG User/Media/Comment ones read
# here; v26.0 removes five legacy protocol behaviours that these modules do not use
# (plain GETs, ``fields`` with field expansion, ``paging.next``).
GRAPH_VERSION = "v26.0"
GRAPH_API_VERSION = ApiVersion(
    value=GRAPH_VERSION,
    pattern=r"v[1-9][0-9]?\.[0-9]{1,2}",  # v26.0, v2.12: Meta's version path segment
    form="vNN.N (a Graph API version such as v26.0)",
)
MAX_PAGE_SIZE = 100

# A wait to announce when Meta pages us: its usage headers give percentages and
# "estimated_time_to_regain_access" in minutes, never a Retry-After. 60 s is the wait
# when no such estimate comes (Platform limits' X-App-Usage carries none).
RATE_LIMIT_WAIT = 60.0
BUSINESS_USAGE_HEADER = "X-Business-Use-Case-Usage"
MAX_USAGE_HEADER = 8192  # characters; one object per business id, a few hundred each


def usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until Meta lifts a Business Use Case limit, from its usage header.

    Graph API "Rate Limits": Page-token and Instagram Platform calls fall under
    Business Use Case limits, and ``X-Business-Use-Case-Usage`` is a JSON object of
    business ids, each a list of usage entries whose ``estimated_time_to_regain_access``
    is the time, in minutes, until calls stop being throttled. The longest one wins
    (every listed business must recover). None when the header is absent, unreadable
    or estimates no wait, so the rule's fixed wait is announced instead.
    """
    raw = headers.get(BUSINESS_USAGE_HEADER) or headers.get(BUSINESS_USAGE_HEADER.lower())
    if not raw or len(raw) > MAX_USAGE_HEADER:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in usage.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    longest = max(
        (m for m in minutes if isinstance(m, int | float) and not isinstance(m, bool) and m > 0),
        default=None,
    )
    return None if longest is None else float(longest) * 60


REAUTH_CODES = frozenset({190, 102})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
PERMISSION_CODES = frozenset({10, *range(200, 300)})

ERRORS = ErrorTable(
    api=(
        ErrorRule(kind=ErrorKind.REAUTH, path=("error", "code"), values=frozenset(REAUTH_CODES)),
        ErrorRule(
            kind=ErrorKind.RETRY_LATER,
            path=("error", "code"),
            values=frozenset(RATE_LIMIT_CODES),
            retry_after=RATE_LIMIT_WAIT,
            wait_reader=usage_wait,
        ),
        ErrorRule(
            kind=ErrorKind.RETRY_LATER, path=("error", "code"), values=frozenset(TRANSIENT_CODES)
        ),
        ErrorRule(
            kind=ErrorKind.PERMANENT, path=("error", "code"), values=frozenset(PERMISSION_CODES)
        ),
    ),
    # The exchange endpoints answer with the same error object (code 190: the
    # token being traded is expired or revoked -> the customer links again).
    token=(
        ErrorRule(kind=ErrorKind.REAUTH, path=("error", "code"), values=frozenset(REAUTH_CODES)),
        ErrorRule(
            kind=ErrorKind.REAUTH, path=("error", "type"), values=frozenset({"OAuthException"})
        ),
    ),
)

CURSOR_PAGES = Pagination(
    style=PageStyle.NEXT_LINK,
    token_path=("paging", "next"),
    limit_param="limit",
    max_limit=MAX_PAGE_SIZE,
)


def graph_account(body: JSONObject, issuer: str) -> Account:
    """The account behind ``/me``: its id, the name or username, and any second id.

    Facebook's /me has one ``id``. Instagram's has ``user_id`` (the professional
    account, the key) and ``id`` (app-scoped); which of the two Meta's callbacks
    name is not documented (providers/instagram.py), so ``id`` is kept as the alias
    a notification may match too.
    """
    subject = body.get("user_id") or body.get("id")
    if not _is_id(subject):
        raise ValueError("the /me answer carries no id")
    other = body.get("id")
    alias = str(other) if _is_id(other) and str(other) != str(subject) else ""
    name = body.get("username") or body.get("name") or subject
    return Account(subject=str(subject), name=str(name), issuer=issuer, alias=alias)


def _is_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and bool(str(value))


MAX_SIGNED_REQUEST = 8192  # characters; Meta's are a few hundred


def _unpadded_b64(value: str) -> bytes:
    """base64url without padding (as Meta sends it); ValueError when it is not."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def open_signed_request(value: str, app_secret: str) -> JSONObject:
    """The payload of a ``signed_request`` whose HMAC-SHA256 matches the app secret.

    The signature covers the payload *as encoded*; it is compared in constant
    time before the payload is parsed. Raises ValueError for anything else.
    """
    if not value or len(value) > MAX_SIGNED_REQUEST or value.count(".") != 1:
        raise ValueError("not a signed request")
    encoded_signature, encoded_payload = value.split(".")
    expected = hmac.new(app_secret.encode(), encoded_payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unpadded_b64(encoded_signature)):
        raise ValueError("the signature does not match the app secret")
    payload = json.loads(_unpadded_b64(encoded_payload))
    if not isinstance(payload, dict):
        raise ValueError("the payload is not an object")
    if str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise ValueError("the payload names another algorithm")
    return payload


def read_signed_request(payload: JSONObject, deletion: bool) -> ProviderNotification:
    """Deauthorize ends the grant; a data deletion request also deletes what is kept."""
    user_id, issued_at = payload.get("user_id"), payload.get("issued_at")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or not str(user_id):
        raise ValueError("user_id is missing")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        raise ValueError("issued_at is missing")
    return ProviderNotification(
        subject=str(user_id),
        event=NotificationEvent.ACCOUNT_DELETED if deletion else NotificationEvent.GRANT_ENDED,
        kind="data_deletion" if deletion else "deauthorize",
        issued_at=float(issued_at),
    )


NOTIFICATIONS = Notifications(
    signed_by=NotificationSigner.CLIENT_SECRET,
    message_field="signed_request",
    read=read_signed_request,
    open_signed=open_signed_request,
    deletion_callback=True,
    # Meta's callback pages document no retry or redelivery at all, so the gateway acts
    # on the first delivery (gateway/provider_notifications.py). 72 hours is our bound
    # on how late a signed request may still arrive; a replay inside it changes nothing.
    max_age=72 * 3600,
)
