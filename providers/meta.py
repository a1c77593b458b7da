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
"""

from __future__ import annotations

from providers.base import (
    Account,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    JSONObject,
    PageStyle,
    Pagination,
)

GRAPH_VERSION = "v21.0"
MAX_PAGE_SIZE = 100

# A wait to announce when Meta pages us: its usage headers give percentages and
# "estimated_time_to_regain_access" in minutes, never a Retry-After.
RATE_LIMIT_WAIT = 60.0

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
    """The account behind ``/me``: the app-scoped user id and the name or username."""
    subject = body.get("user_id") or body.get("id")
    if not isinstance(subject, str | int) or isinstance(subject, bool) or not str(subject):
        raise ValueError("the /me answer carries no id")
    name = body.get("username") or body.get("name") or subject
    return Account(subject=str(subject), name=str(name), issuer=issuer)
