"""LinkedIn: Sign In with LinkedIn using OpenID Connect, and an organization's posts.

From Microsoft Learn's LinkedIn docs: "Sign In with LinkedIn using OpenID
Connect" (issuer, JWKS, userinfo), "Posts API" (visibility, lifecycleState,
distribution), "Error handling" and "Rate limits" (429, daily windows reset at
midnight UTC), "Programmatic refresh tokens" (365-day TTL fixed at first grant).
Versioned REST calls need ``LinkedIn-Version`` and the Rest.li 2.0 protocol header.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from policies import Field, JSONValue, Record, Visibility
from providers.assembly import without_content
from providers.base import (
    ApiVersion,
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
    oidc_account,
)
from providers.oidc import normalize_profile

# LinkedIn-Version, YYYYMM: the default; an operator moves it with ``api_version`` in
# [providers.linkedin] (gateway.config), as LinkedIn advises ("make the base URL and
# version header configurable", learn.microsoft.com/linkedin/talent/versioning-announcement).
# LinkedIn's own pages (learn.microsoft.com/linkedin/marketing/versioning): every
# versioned call must name its version, monthly versions are "supported and stable for a
# minimum of one year before sunset", and a sunset one is refused. The migrations page
# (.../marketing/integrations/migrations) dates each sunset, about a year after release
# (202603: March 16, 2027); the recent-changes page (.../marketing/integrations/
# recent-changes) listed 202608 as the latest in August 2026, announcing 202508's sunset
# for August 17, 2026. 202607 stays the default: its changes and 202608's touch ads,
# audiences and statistics APIs, not the Posts finder or userinfo used here. Supported
# until at least July 2027: move the default again before then. (The shared providers
# reference's 202405 was sunset in 2025: LinkedIn would refuse it.)
API_VERSION = "202607"
API_VERSION_HEADER = "LinkedIn-Version"

# Post ``visibility`` (MemberNetworkVisibility). Only PUBLIC is designated for anyone;
# LOGGED_IN still needs a LinkedIn sign-in, CONNECTIONS and CONTAINER name an audience.
POST_VISIBILITY: Mapping[str, Visibility] = {
    "PUBLIC": Visibility.PUBLIC,
    "LOGGED_IN": Visibility.RESTRICTED,
    "CONNECTIONS": Visibility.RESTRICTED,
    "CONTAINER": Visibility.RESTRICTED,
}
# ``lifecycleState``: only a published post is seen by its audience; a draft (or one
# still being published) is seen by the page's admins only.
PUBLISHED = "PUBLISHED"
NOT_YET_PUBLISHED = frozenset({"DRAFT", "PUBLISH_REQUESTED", "PUBLISH_FAILED", "PROCESSING"})
# ``distribution.feedDistribution``: NONE is a "dark" post (sponsored content only),
# shown to a targeted audience and not on the page's feed.
FEED_DISTRIBUTION: Mapping[str, bool] = {"MAIN_FEED": True, "NONE": False}


def post_visibility(item: JSONObject) -> Visibility:
    """The visibility of one post; a missing or unknown value anywhere is UNKNOWN."""
    state = item.get("lifecycleState")
    if state in NOT_YET_PUBLISHED:
        return Visibility.PRIVATE
    if state != PUBLISHED:
        return Visibility.UNKNOWN
    feed = _mapping(item.get("distribution")).get("feedDistribution")
    on_feed = FEED_DISTRIBUTION.get(feed) if isinstance(feed, str) else None
    if on_feed is None:
        return Visibility.UNKNOWN
    if not on_feed:
        return Visibility.RESTRICTED
    raw = item.get("visibility")
    return (
        POST_VISIBILITY.get(raw, Visibility.UNKNOWN)
        if isinstance(raw, str)
        else (Visibility.UNKNOWN)
    )


def normalize_post(item: JSONObject, ctx: NormalizeContext) -> Record:
    """One organization post. Its author is the customer's organization, not an End User."""
    visibility = post_visibility(item)
    if ctx.drops(visibility):
        return without_content(ctx, id=str(item["id"]), visibility=visibility)
    entries: list[tuple[str, JSONValue, str]] = [
        ("commentary", item.get("commentary"), "user.content.public"),
        ("author", item.get("author"), "system.operations"),
        ("published_at", _millis_iso(item.get("publishedAt")), "system.operations"),
        ("lifecycle_state", item.get("lifecycleState"), "system.operations"),
    ]
    data = {
        name: Field(value, category)
        for name, value, category in entries
        if value is not None and value != ""
    }
    return Record(
        id=str(item["id"]),
        customer_id=ctx.customer_id,
        connection_id=ctx.connection_id,
        provider=ctx.provider,
        resource=ctx.resource,
        visibility=visibility,
        subjects=(),
        data=data,
        occurred_at=_millis(item.get("publishedAt") or item.get("createdAt")),
        extra={"provider_visibility": _str(item.get("visibility"))},
    )


def _millis(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _millis_iso(value: object) -> str | None:
    moment = _millis(value)
    return moment.isoformat() if moment else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def until_utc_midnight(headers: Mapping[str, str]) -> float | None:
    """Seconds from the answer's own ``Date`` (RFC 9110 §6.6.1) to the next midnight UTC.

    "Rate limits": LinkedIn's limits are daily and reset at midnight UTC, and a 429
    carries no Retry-After, so the wait is read off LinkedIn's clock, not ours. None
    without a readable ``Date``.
    """
    raw = headers.get("Date") or headers.get("date")
    if not raw:
        return None
    try:
        now = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if now.tzinfo is None:
        return None
    now = now.astimezone(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return (midnight - now).total_seconds()


ERRORS = ErrorTable(
    api=(
        # "Error handling": {"message", "serviceErrorCode", "status"}; 401 = token expired,
        # revoked, or the scopes changed.
        ErrorRule(kind=ErrorKind.REAUTH, statuses=frozenset({401})),
        # "Rate limits": daily windows that reset at midnight UTC, without Retry-After;
        # retrying within this request cannot help, so the caller is told when it can.
        ErrorRule(
            kind=ErrorKind.USAGE_CAPPED,
            statuses=frozenset({429}),
            wait_reader=until_utc_midnight,
        ),
        # Asking for another organization's posts, or a member without a page role.
        ErrorRule(kind=ErrorKind.PERMANENT, statuses=frozenset({403})),
    ),
    token=(
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error",),
            values=frozenset({"invalid_client", "unauthorized_client"}),
        ),
    ),
)

PROVIDER = Provider(
    name="linkedin",
    display_name="LinkedIn",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            issuer="https://www.linkedin.com/oauth",
            authorize_url="https://www.linkedin.com/oauth/v2/authorization",
            token_url="https://www.linkedin.com/oauth/v2/accessToken",  # noqa: S106 - a URL
            # Not on LinkedIn's own pages (Microsoft Learn documents introspection at
            # /oauth/v2/introspectToken but no revocation); integrations commonly POST
            # client_id, client_secret and token here [community]. A refused or missing
            # revocation never keeps the tokens: disconnect deletes them either way.
            revoke_url="https://www.linkedin.com/oauth/v2/revoke",
            userinfo_url="https://api.linkedin.com/v2/userinfo",
            jwks_url="https://www.linkedin.com/oauth/openid/jwks",
            api_base_url="https://api.linkedin.com",
        ),
        # r_organization_social: read the organization's posts (page roles only).
        scopes=("openid", "profile", "email", "r_organization_social"),
        client_auth=ClientAuth.CLIENT_SECRET_POST,
        oidc=True,
        rotates_refresh_token=False,  # refresh keeps the 365-day TTL of the first grant
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/v2/userinfo",
            items_path=(),
            normalize=normalize_profile,
            description="the signed-in LinkedIn member's own profile",
        ),
        "organization.posts": Resource(
            name="organization.posts",
            # Rest.li 2.0: the author URN is percent-encoded in the finder.
            path="/rest/posts?q=author&author=urn%3Ali%3Aorganization%3A{organization_id}",
            items_path=("elements",),
            normalize=normalize_post,
            # No values_from: the organizations a member administers are listed by
            # /rest/organizationAcls?q=roleAssignee, which needs r_organization_admin or
            # rw_organization_admin (Microsoft Learn, "Organization Access Control by
            # Role"), scopes this module does not ask for. Only a caller can name one.
            params=(Param(name="organization_id", pattern=r"[0-9]{1,20}"),),
            pagination=Pagination(
                style=PageStyle.OFFSET,
                token_param="start",  # noqa: S106 - a parameter name, not a secret
                limit_param="count",
                max_limit=100,
            ),
            description="posts of an organization page the member administers",
        ),
    },
    account_from_claims=oidc_account,
    scope_descriptions={
        "openid": "know who you are when you sign in",
        "profile": "see your name and photo",
        "email": "see your email address",
        "r_organization_social": "see your organization's posts (read only)",
    },
    errors=ERRORS,
    api_headers={API_VERSION_HEADER: API_VERSION, "X-Restli-Protocol-Version": "2.0.0"},
    api_version=ApiVersion(
        value=API_VERSION,
        # YYYYMM, or YYYYMM.NN for a patch release (202508.02)
        pattern=r"20[0-9]{2}(0[1-9]|1[0-2])(\.[0-9]{2})?",
        form="YYYYMM (a LinkedIn-Version value)",
        header=API_VERSION_HEADER,
    ),
)

__all__ = [
    "POST_VISIBILITY",
    "PROVIDER",
    "normalize_post",
    "post_visibility",
    "until_utc_midnight",
]
