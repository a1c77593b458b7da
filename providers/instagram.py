"""Instagram professional accounts through Business Login for Instagram.

OAuth ("Business Login for Instagram"): the authorization window at
instagram.com, the code exchanged at ``api.instagram.com/oauth/access_token``
with the app secret in the form body, for a one-hour token. The guide's Step 2
shows that answer wrapped, ``{"data": [{"access_token", "user_id",
"permissions"}]}``, while the older Basic Display guide for the same endpoint
shows it flat; both are read (``token_answer``). That token is
traded at once for a 60-day one (``GET graph.instagram.com/access_token``,
``grant_type=ig_exchange_token``, reference "Access Token"). There is no
refresh token: a long-lived token at least 24 hours old is traded for a fresh
one (``GET /refresh_access_token``, ``grant_type=ig_refresh_token``, reference
"Refresh Access Token"). Instagram documents no revocation endpoint for this
login; disconnecting deletes the tokens on our side.

Scopes, least and read-only in use (the new ``instagram_business_*`` values):
``instagram_business_basic`` (profile and media), ``..._manage_comments`` (read
comments on the account's media), ``..._manage_messages`` (read conversations).
Errors and paging are the Graph API's (``providers.meta``).

Graph API version (``providers.meta.GRAPH_VERSION``, v26.0 by default; Meta's
changelog https://developers.facebook.com/docs/graph-api/changelog/versions/ and
the Instagram Platform changelog https://developers.facebook.com/documentation/instagram-platform/changelog/):
in the ``graph.instagram.com`` API and ``/me`` URLs, which an operator's
``api_version`` moves. The authorization window, the code exchange and the two token
grants are unversioned in the Business Login guide and stay so.
"""

from __future__ import annotations

from collections.abc import Mapping

from policies import Record, Visibility
from providers.assembly import (
    HANDLE,
    OPERATIONS,
    PRIVATE_CONTENT,
    USER_ID,
    content_category,
    fields,
    listed,
    mapping,
    present,
    record,
    subject,
    without_content,
)
from providers.base import (
    ClientAuth,
    Endpoints,
    JSONObject,
    NormalizeContext,
    OAuthSettings,
    Param,
    Provider,
    Resource,
    TokenExchange,
    ValuesFrom,
)
from providers.meta import (
    CURSOR_PAGES,
    ERRORS,
    GRAPH_API_VERSION,
    GRAPH_VERSION,
    NOTIFICATIONS,
    graph_account,
)

GRAPH = f"https://graph.instagram.com/{GRAPH_VERSION}"

SCOPES = (
    "instagram_business_basic",
    "instagram_business_manage_comments",
    "instagram_business_manage_messages",
)


def token_answer(body: JSONObject) -> JSONObject:
    """The code exchange's answer in RFC 6749 §5.1 form, wrapped or flat.

    "Business Login for Instagram", Step 2 documents ``{"data": [{...}]}``; the
    Basic Display guide documents the same fields flat. ``permissions`` (the
    granted permissions, comma-separated) is the granted ``scope``. A wrapper
    without exactly one object is left as it is and read as malformed. A refusal
    comes as ``{"error_type": "OAuthException", "code": 400, "error_message": ...}``
    (the guide's "Sample Rejected Response"); its ``error_type`` becomes ``error``.
    """
    refusal = body.get("error_type")
    if "error" not in body and isinstance(refusal, str) and refusal:
        return {"error": refusal[:64], "error_description": str(body.get("error_message", ""))}
    inner = body.get("data")
    if isinstance(inner, list):
        if len(inner) != 1 or not isinstance(inner[0], Mapping):
            return body
        body = inner[0]
    granted = body.get("permissions")
    if "scope" in body or not isinstance(granted, str | list):
        return body
    scope = ",".join(map(str, granted)) if isinstance(granted, list) else granted
    return {**body, "scope": scope}


# Media ``media_product_type`` (IG Media reference). A professional account is public,
# so what it publishes to the feed or as a reel is public; a story may be shown to
# Close Friends only and the API does not say which, and an ad may run unpublished
# ("dark"): both fail closed.
MEDIA_PRODUCT_TYPE: Mapping[str, Visibility] = {
    "FEED": Visibility.PUBLIC,
    "REELS": Visibility.PUBLIC,
    "STORY": Visibility.RESTRICTED,
    "AD": Visibility.RESTRICTED,
}

# Comment ``hidden`` (IG Comment reference): a comment on the customer's media is
# directly provided to the customer; a hidden one is no longer shown to others.
COMMENT_HIDDEN: Mapping[bool, Visibility] = {
    False: Visibility.DIRECT,
    True: Visibility.RESTRICTED,
}

# A conversation is a DM thread an Instagram user opened with the professional account.
CONVERSATION = Visibility.DIRECT

MEDIA_FIELDS = "id,caption,media_type,media_product_type,timestamp,permalink,is_shared_to_feed"
COMMENT_FIELDS = "id,text,timestamp,from,hidden,parent_id,username"
CONVERSATION_FIELDS = "id,updated_time,participants,messages{id,message,from,to,created_time}"


def normalize_media(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/me/media``: what the professional account published."""
    kind = item.get("media_product_type")
    visibility = (
        MEDIA_PRODUCT_TYPE.get(kind, Visibility.UNKNOWN)
        if isinstance(kind, str)
        else Visibility.UNKNOWN
    )
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id"), visibility=visibility)
    data = fields(
        ("caption", item.get("caption"), content_category(visibility)),
        ("media_type", item.get("media_type"), OPERATIONS),
        ("permalink", item.get("permalink"), OPERATIONS),
        ("timestamp", item.get("timestamp"), OPERATIONS),
    )
    # The customer's own account wrote it: no End User is its subject.
    return record(
        ctx,
        id=item.get("id"),
        visibility=visibility,
        subjects=[],
        data=data,
        occurred_at=item.get("timestamp"),
        extra={"media_product_type": kind},
    )


def normalize_comment(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/{media_id}/comments``: comments on one of the account's media."""
    hidden = item.get("hidden")
    visibility = COMMENT_HIDDEN[hidden] if isinstance(hidden, bool) else Visibility.UNKNOWN
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id"), visibility=visibility)
    author = mapping(item.get("from"))
    own = str(author.get("id", "")) == ctx.account_id
    data = fields(
        ("text", item.get("text"), content_category(visibility)),
        ("timestamp", item.get("timestamp"), OPERATIONS),
        ("parent_id", item.get("parent_id"), OPERATIONS),
        ("author_id", None if own else author.get("id"), USER_ID),
        ("author_username", author.get("username") or item.get("username"), HANDLE),
    )
    who = (
        None
        if own
        else subject(
            ctx,
            role="author",
            user_id=author.get("id"),
            handle=author.get("username") or item.get("username"),
        )
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=visibility,
        subjects=[who],
        data=data,
        occurred_at=item.get("timestamp"),
        extra={"hidden": hidden},
    )


def normalize_conversation(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/me/conversations?platform=instagram``: DM threads with the account."""
    people = [
        mapping(p)
        for p in listed(mapping(item.get("participants")).get("data"))
        if str(mapping(p).get("id", "")) != ctx.account_id
    ]
    messages = [
        {
            "from_id": str(mapping(m.get("from")).get("id", "")),
            "text": str(m.get("message", "")),
            "created_time": str(m.get("created_time", "")),
        }
        for m in map(mapping, listed(mapping(item.get("messages")).get("data")))
    ]
    data = fields(
        ("participant_ids", present(p.get("id") for p in people), USER_ID),
        ("participant_usernames", present(p.get("username") for p in people), HANDLE),
        ("messages", messages, PRIVATE_CONTENT),
        ("updated_time", item.get("updated_time"), OPERATIONS),
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=CONVERSATION,
        subjects=[
            subject(ctx, role="participant", user_id=p.get("id"), handle=p.get("username"))
            for p in people
        ],
        data=data,
        occurred_at=item.get("updated_time"),
    )


PROVIDER = Provider(
    name="instagram",
    display_name="Instagram (professional account)",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            authorize_url="https://www.instagram.com/oauth/authorize",
            token_url="https://api.instagram.com/oauth/access_token",  # noqa: S106 - a URL
            userinfo_url=f"{GRAPH}/me?fields=user_id,id,username,name",
            api_base_url=GRAPH,
        ),
        scopes=SCOPES,
        client_auth=ClientAuth.CLIENT_SECRET_POST,  # form body (reference "Oauth Access Token")
        scope_separator=",",
        token_answer=token_answer,
        long_lived_exchange=TokenExchange(
            path="/access_token",
            grant_type="ig_exchange_token",
            token_param="access_token",  # noqa: S106 - a parameter name
            send_client_id=False,
        ),
        refresh_by_exchange=TokenExchange(
            path="/refresh_access_token",
            grant_type="ig_refresh_token",
            token_param="access_token",  # noqa: S106 - a parameter name
            send_client_id=False,
            send_client_secret=False,
        ),
    ),
    resources={
        "media": Resource(
            name="media",
            path="/me/media",
            normalize=normalize_media,
            query={"fields": MEDIA_FIELDS},
            pagination=CURSOR_PAGES,
            description="What the professional account published.",
        ),
        "comments": Resource(
            name="comments",
            path="/{media_id}/comments",
            normalize=normalize_comment,
            query={"fields": COMMENT_FIELDS},
            params=(
                Param(
                    name="media_id",
                    pattern=r"[0-9]{1,32}",
                    values_from=ValuesFrom(resource="media"),
                ),
            ),
            pagination=CURSOR_PAGES,
            description="Comments on one of the account's media.",
        ),
        "conversations": Resource(
            name="conversations",
            path="/me/conversations",
            normalize=normalize_conversation,
            query={"platform": "instagram", "fields": CONVERSATION_FIELDS},
            pagination=CURSOR_PAGES,
            description="Direct-message threads people opened with the account.",
        ),
    },
    account_from_claims=graph_account,
    api_version=GRAPH_API_VERSION,  # in the URL path: with_api_version moves it
    # Business Login's app settings take the same Deauthorize and Data Deletion callback
    # URLs (providers.meta). Which id their signed_request's ``user_id`` holds is not
    # documented: /me has ``user_id`` (the professional account, which the IG User
    # reference calls the account's ID, and the key here) and ``id`` (the "app-scoped user
    # ID"), two different numbers for one account (an integrator's report,
    # github.com/kevinrivm/vocero-crm issue #60; webhooks carry ``user_id``), and Meta's
    # Data Deletion Request Callback page says its request carries "an app-scoped ID". No
    # Meta page found says which (Business Login for Instagram, "Customize the Instagram
    # use case", the IG User and /me references, the deletion callback page; searched
    # 2026-11-29). So the connection keeps /me ``id`` as its alias (graph_account) and a
    # callback naming either id acts on it; connections linked before migration 0013
    # match by ``user_id`` only until linked again.
    # tests/providers/instagram/test_instagram_notifications.py pins both readings.
    notifications=NOTIFICATIONS,
    errors=ERRORS,
    scope_descriptions={
        "instagram_business_basic": "See your professional account's profile and media",
        "instagram_business_manage_comments": "Read comments on your media",
        "instagram_business_manage_messages": "Read your direct messages",
    },
)
