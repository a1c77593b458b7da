"""Facebook Pages through Facebook Login: posts, comments and Messenger conversations.

OAuth (Facebook Login, "Manually Build a Login Flow"): the code is exchanged at
``/oauth/access_token`` with the app secret in the request; there is no
refresh token. The short-lived user token is traded at once for a long-lived
one (``grant_type=fb_exchange_token``, "Long-Lived Access Tokens", about 60
days), and the Page access tokens listed by ``/me/accounts`` under it are
stored per connection, sealed like every other token: every Page resource is
read with its Page's token. Disconnecting is ``DELETE /me/permissions``
("Permissions Reference": revokes every permission the user granted the app).

Scopes, read-only and least (Permissions Reference): ``pages_show_list`` for
the Page list and its tokens, ``pages_read_engagement`` for the Page's posts
and comments, ``pages_read_user_content`` for what visitors post and comment
on the Page, ``pages_messaging`` for the Page's conversations (Meta has no
read-only messaging permission; the gateway only ever reads).

Graph API version (``providers.meta.GRAPH_VERSION``, v26.0 by default; Meta's
changelog https://developers.facebook.com/docs/graph-api/changelog/versions/): in
every URL here, the Login dialog's and the token endpoint's included, so an
operator's ``api_version`` moves them all together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies import Record, Visibility
from providers.assembly import (
    HANDLE,
    NAME,
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
    RevokeStyle,
    ScopedTokens,
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

GRAPH = f"https://graph.facebook.com/{GRAPH_VERSION}"

SCOPES = ("pages_show_list", "pages_read_engagement", "pages_read_user_content", "pages_messaging")

# Page Post ``privacy.value`` (Graph API reference, Privacy): the audience its author chose.
POST_PRIVACY: Mapping[str, Visibility] = {
    "EVERYONE": Visibility.PUBLIC,
    "ALL_FRIENDS": Visibility.RESTRICTED,
    "FRIENDS_OF_FRIENDS": Visibility.RESTRICTED,
    "CUSTOM": Visibility.RESTRICTED,  # allow/deny lists: a hand-picked audience
    "SELF": Visibility.PRIVATE,  # "Only me"
}

# Page Post ``timeline_visibility``: whether the post shows on the Page's timeline.
# "hidden" narrows whatever the audience says; an unlisted value is unknown.
TIMELINE_VISIBILITY: Mapping[str, Visibility | None] = {
    "normal": None,  # no change
    "forced_allow": None,  # shown by the Page's admin: no change
    "hidden": Visibility.RESTRICTED,
}

# Comment ``is_hidden`` / ``is_private`` (Graph API reference, Comment). A comment on
# the customer's post is directly provided to the customer, unless the Page hid
# it (then only its author and their friends see it) or it is a private one. Both
# flags are asked for (COMMENT_FIELDS): one the answer leaves out is not known to be
# false, so the comment is unknown (fail closed), as ``is_published`` is for posts.
COMMENT_VISIBILITY: Mapping[tuple[bool, bool], Visibility] = {
    (False, False): Visibility.DIRECT,
    (True, False): Visibility.RESTRICTED,
    (False, True): Visibility.PRIVATE,
    (True, True): Visibility.PRIVATE,
}

# A Messenger conversation with the Page is sent to the customer by the End User.
CONVERSATION = Visibility.DIRECT

POST_FIELDS = (
    "id,message,created_time,updated_time,from,privacy,is_published,is_hidden,"
    "timeline_visibility,permalink_url"
)
COMMENT_FIELDS = "id,message,created_time,from,is_hidden,is_private,parent{id}"
CONVERSATION_FIELDS = (
    "id,updated_time,link,participants,messages.limit(25){id,message,from,to,created_time}"
)

# A Page id: the Pages the user granted are the objects holding a scoped (Page) token.
_PAGE_ID = Param(
    name="page_id", pattern=r"[0-9]{1,32}", values_from=ValuesFrom(scoped_objects=True)
)


def normalize_post(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/{page_id}/feed``: posts on the Page, by the Page and by visitors."""
    privacy = mapping(item.get("privacy")).get("value")
    visibility = (
        POST_PRIVACY.get(privacy, Visibility.UNKNOWN)
        if isinstance(privacy, str)
        else (Visibility.UNKNOWN)
    )
    published = item.get("is_published")
    timeline = item.get("timeline_visibility")
    if published is False:
        visibility = Visibility.PRIVATE  # a draft or scheduled post: the Page's admins only
    elif published is not True:
        visibility = Visibility.UNKNOWN  # asked for and not said: fail closed
    hidden = item.get("is_hidden")
    if hidden is True and visibility is not Visibility.UNKNOWN:
        visibility = Visibility.RESTRICTED  # off the Page's timeline
    elif not isinstance(hidden, bool) and visibility is Visibility.PUBLIC:
        visibility = Visibility.UNKNOWN  # asked for (POST_FIELDS) and not said: fail closed
    if timeline is not None:
        narrowed = TIMELINE_VISIBILITY.get(timeline) if isinstance(timeline, str) else None
        if not isinstance(timeline, str) or timeline not in TIMELINE_VISIBILITY:
            visibility = Visibility.UNKNOWN
        elif narrowed is not None and visibility is Visibility.PUBLIC:
            visibility = narrowed
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id"), visibility=visibility)
    author = mapping(item.get("from"))
    by_page = _is_page(item, author)
    data = fields(
        ("message", item.get("message"), content_category(visibility)),
        ("created_time", item.get("created_time"), OPERATIONS),
        ("permalink_url", item.get("permalink_url"), OPERATIONS),
        *_author(author, by_page),
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=visibility,
        subjects=[] if by_page else [subject(ctx, role="author", user_id=author.get("id"))],
        data=data,
        occurred_at=item.get("created_time"),
        extra={
            "provider_visibility": privacy,
            "is_published": published,
            "is_hidden": hidden,
            "timeline_visibility": timeline,
        },
    )


def normalize_comment(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/{post_id}/comments``: comments on one of the Page's posts."""
    hidden, private = item.get("is_hidden"), item.get("is_private")
    visibility = (
        COMMENT_VISIBILITY[(hidden, private)]
        if isinstance(hidden, bool) and isinstance(private, bool)
        else Visibility.UNKNOWN
    )
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id"), visibility=visibility)
    author = mapping(item.get("from"))
    by_page = _is_page(item, author)
    data = fields(
        ("message", item.get("message"), content_category(visibility)),
        ("created_time", item.get("created_time"), OPERATIONS),
        ("parent_id", mapping(item.get("parent")).get("id"), OPERATIONS),
        *_author(author, by_page),
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=visibility,
        subjects=[] if by_page else [subject(ctx, role="author", user_id=author.get("id"))],
        data=data,
        occurred_at=item.get("created_time"),
        extra={"is_hidden": hidden, "is_private": item.get("is_private")},
    )


def normalize_conversation(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/{page_id}/conversations``: Messenger threads people started with the Page."""
    page_id = ctx.scope_id
    people = [
        mapping(p)
        for p in listed(mapping(item.get("participants")).get("data"))
        if mapping(p).get("id") != page_id
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
        ("participant_names", present(p.get("name") for p in people), NAME),
        ("messages", messages, PRIVATE_CONTENT),
        ("updated_time", item.get("updated_time"), OPERATIONS),
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=CONVERSATION,
        subjects=[subject(ctx, role="participant", user_id=p.get("id")) for p in people],
        data=data,
        occurred_at=item.get("updated_time"),
    )


def _is_page(item: JSONObject, author: Mapping[str, Any]) -> bool:
    """Graph ids of Page content are ``{page_id}_{object_id}``: the Page wrote it itself."""
    item_id, author_id = item.get("id"), author.get("id")
    return (
        isinstance(item_id, str)
        and isinstance(author_id, str)
        and item_id.split("_", 1)[0] == author_id
    )


def _author(author: Mapping[str, Any], by_page: bool) -> list[tuple[str, object, str]]:
    if by_page:
        return [
            ("page_id", author.get("id"), OPERATIONS),
            ("page_name", author.get("name"), OPERATIONS),
        ]
    return [
        ("author_id", author.get("id"), USER_ID),
        ("author_name", author.get("name"), NAME),
        ("author_username", author.get("username"), HANDLE),
    ]


PROVIDER = Provider(
    name="facebook",
    display_name="Facebook Pages",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            authorize_url=f"https://www.facebook.com/{GRAPH_VERSION}/dialog/oauth",
            token_url=f"{GRAPH}/oauth/access_token",
            revoke_url=f"{GRAPH}/me/permissions",
            userinfo_url=f"{GRAPH}/me?fields=id,name",
            api_base_url=GRAPH,
        ),
        scopes=SCOPES,
        # Facebook Login takes client_id and client_secret as request parameters.
        client_auth=ClientAuth.CLIENT_SECRET_POST,
        scope_separator=",",
        long_lived_exchange=TokenExchange(
            path="oauth/access_token",
            grant_type="fb_exchange_token",
            token_param="fb_exchange_token",  # noqa: S106 - a parameter name
        ),
        revoke_style=RevokeStyle.DELETE_WITH_BEARER,
    ),
    resources={
        "page.posts": Resource(
            name="page.posts",
            path="/{page_id}/feed",
            normalize=normalize_post,
            query={"fields": POST_FIELDS},
            params=(_PAGE_ID,),
            pagination=CURSOR_PAGES,
            scoped_token_param="page_id",  # noqa: S106 - a parameter name
            description="Posts on a linked Page, by the Page and by visitors.",
        ),
        "page.comments": Resource(
            name="page.comments",
            path="/{post_id}/comments",
            normalize=normalize_comment,
            query={"fields": COMMENT_FIELDS, "filter": "stream"},
            params=(
                _PAGE_ID,
                # The ids of the Page's posts, read with the page_id chosen first.
                Param(
                    name="post_id",
                    pattern=r"[0-9]{1,32}_[0-9]{1,32}",
                    values_from=ValuesFrom(resource="page.posts"),
                ),
            ),
            pagination=CURSOR_PAGES,
            scoped_token_param="page_id",  # noqa: S106 - a parameter name
            description="Comments on one of the Page's posts.",
        ),
        "page.conversations": Resource(
            name="page.conversations",
            path="/{page_id}/conversations",
            normalize=normalize_conversation,
            query={"fields": CONVERSATION_FIELDS},
            params=(_PAGE_ID,),
            pagination=CURSOR_PAGES,
            scoped_token_param="page_id",  # noqa: S106 - a parameter name
            description="Messenger conversations people started with the Page.",
        ),
    },
    account_from_claims=graph_account,
    api_version=GRAPH_API_VERSION,  # in the URL path: with_api_version moves it
    notifications=NOTIFICATIONS,  # Deauthorize and Data Deletion callbacks (providers.meta)
    errors=ERRORS,
    scoped_tokens=ScopedTokens(path="/me/accounts", query={"fields": "id,name,access_token"}),
    scope_descriptions={
        "pages_show_list": "See the list of Pages you manage",
        "pages_read_engagement": "Read your Pages' posts and comments",
        "pages_read_user_content": "Read what visitors post and comment on your Pages",
        "pages_messaging": "Read your Pages' Messenger conversations",
    },
)
