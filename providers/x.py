"""X (formerly Twitter) through OAuth 2.0 Authorization Code with PKCE: profile, mentions, DMs.

OAuth (docs.x.com, "OAuth 2.0 Authorization Code Flow with PKCE"): PKCE is
mandatory; a confidential client authenticates at the token endpoints with
HTTP Basic (``client_id:client_secret``). ``offline.access`` is what yields a
refresh token, and refresh tokens rotate: each works once, so the new one is
stored every time (``rotates_refresh_token``; gateway/refresh.py stores it in
the same transaction). Revocation is ``POST /2/oauth2/revoke`` (RFC 7009 form,
Basic client auth). That path is not in the stored copies of X's docs (only the
v1.1 ``oauth/invalidate_token`` pages are); integrations consistently use it
[community]. Disconnect deletes the tokens whatever the revocation answers.

Scopes, read-only and least: ``users.read`` (the account and post authors),
``tweet.read`` (mentions; also required by the DM endpoints), ``dm.read`` and
``offline.access``.

Errors: 401 is a dead token; 429 carries ``x-rate-limit-reset`` (epoch
seconds), except that a pay-per-use cap answers 429 with the problem type
``https://api.x.com/2/problems/usage-capped``, which no retry can cure. A
refresh token that is used or revoked is answered with ``invalid_request``
(not ``invalid_grant``) at the token endpoint, so that, too, means re-consent.
Paging: ``meta.next_token`` sent back as ``pagination_token``; no
``next_token`` means the last page, even when a page is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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
    record,
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
    Provider,
    Resource,
)

API = "https://api.x.com/2"

SCOPES = ("tweet.read", "users.read", "dm.read", "offline.access")

USAGE_CAPPED = "https://api.x.com/2/problems/usage-capped"

# The author's ``protected`` flag (User object): a protected account's posts are
# shown to the followers it approved only, so a mention from one is not public.
AUTHOR_PROTECTED: Mapping[bool, Visibility] = {
    False: Visibility.PUBLIC,
    True: Visibility.RESTRICTED,
}

# A DM event is sent to the linked account by its sender.
DIRECT_MESSAGE = Visibility.DIRECT
OWN_PROFILE = Visibility.DIRECT  # the account holder's own profile, shared by linking

USER_FIELDS = "id,name,username,protected"

_PAGES = Pagination(
    style=PageStyle.PAGE_TOKEN,
    token_param="pagination_token",  # noqa: S106 - a parameter name
    token_path=("meta", "next_token"),
    limit_param="max_results",
    max_limit=100,
)
# "User mention timeline" (GET /2/users/:id/mentions): ``max_results`` is 5 to 100 (the
# DM events lookup takes 1 to 100). A smaller one is a 400 from X, so the gateway refuses
# it itself, with the range the caller can use.
_MENTION_PAGES = replace(_PAGES, min_limit=5)

ERRORS = ErrorTable(
    api=(
        ErrorRule(kind=ErrorKind.USAGE_CAPPED, path=("type",), values=frozenset({USAGE_CAPPED})),
        ErrorRule(kind=ErrorKind.RETRY_LATER, statuses=frozenset({429})),
    ),
    token=(
        ErrorRule(
            kind=ErrorKind.REAUTH,
            path=("error",),
            values=frozenset({"invalid_grant", "invalid_request"}),
        ),
    ),
)


def with_users(body: JSONObject) -> Any:
    """The page's posts or DM events, each with its author or sender from ``includes.users``.

    X returns expanded objects once per page beside the data ("Fields and
    expansions"); the normalizers judge one item, so the user goes with it.
    """
    users = {
        str(u.get("id")): u
        for u in map(mapping, listed(mapping(body.get("includes")).get("users")))
    }
    items = body.get("data", [])  # a page with no results has no "data" at all
    if not isinstance(items, list):
        return items  # not a list: the records service refuses the page
    joined: list[Any] = []
    for item in items:
        if not isinstance(item, Mapping):
            joined.append(item)
            continue
        who = item.get("author_id") or item.get("sender_id")
        joined.append({**item, "_user": users.get(str(who))} if who else dict(item))
    return joined


def normalize_profile(body: JSONObject, ctx: NormalizeContext) -> Record:
    """``/2/users/me``: the account holder who linked the account."""
    user = mapping(body.get("data"))
    data = fields(
        ("id", user.get("id"), USER_ID),
        ("name", user.get("name"), NAME),
        ("username", user.get("username"), HANDLE),
        ("description", user.get("description"), PRIVATE_CONTENT),
        ("created_at", user.get("created_at"), OPERATIONS),
    )
    return record(
        ctx,
        id=user.get("id"),
        visibility=OWN_PROFILE,
        subjects=[
            subject(ctx, role="account_holder", user_id=user.get("id"), handle=user.get("username"))
        ],
        data=data,
    )


def normalize_mention(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/2/users/{id}/mentions``: posts that mention the linked account."""
    author = mapping(item.get("_user"))
    protected = author.get("protected")
    visibility = AUTHOR_PROTECTED[protected] if isinstance(protected, bool) else Visibility.UNKNOWN
    if item.get("withheld") is not None and visibility is Visibility.PUBLIC:
        visibility = Visibility.RESTRICTED  # withheld in some countries: not shown to everyone
    if ctx.drops(visibility):
        return without_content(ctx, id=item.get("id"), visibility=visibility)
    data = fields(
        ("text", item.get("text"), content_category(visibility)),
        ("created_at", item.get("created_at"), OPERATIONS),
        ("conversation_id", item.get("conversation_id"), OPERATIONS),
        ("author_id", item.get("author_id"), USER_ID),
        ("author_name", author.get("name"), NAME),
        ("author_username", author.get("username"), HANDLE),
    )
    return record(
        ctx,
        id=item.get("id"),
        visibility=visibility,
        subjects=[
            subject(
                ctx, role="author", user_id=item.get("author_id"), handle=author.get("username")
            )
        ],
        data=data,
        occurred_at=item.get("created_at"),
        extra={"author_protected": protected},
    )


def normalize_dm_event(item: JSONObject, ctx: NormalizeContext) -> Record:
    """``/2/dm_events``: direct messages in the linked account's conversations."""
    sender = mapping(item.get("_user"))
    sender_id = item.get("sender_id")
    own = str(sender_id) == ctx.account_id
    data = fields(
        ("text", item.get("text"), PRIVATE_CONTENT),
        ("event_type", item.get("event_type"), OPERATIONS),
        ("created_at", item.get("created_at"), OPERATIONS),
        ("dm_conversation_id", item.get("dm_conversation_id"), OPERATIONS),
        ("sender_id", sender_id, OPERATIONS if own else USER_ID),
        ("sender_username", None if own else sender.get("username"), HANDLE),
    )
    others = [p for p in listed(item.get("participant_ids")) if str(p) not in (ctx.account_id, "")]
    subjects = [
        subject(
            ctx,
            role="participant",
            user_id=p,
            handle=sender.get("username") if p == sender_id else None,
        )
        for p in others
    ]
    if not own and sender_id not in others:
        subjects.append(
            subject(ctx, role="sender", user_id=sender_id, handle=sender.get("username"))
        )
    return record(
        ctx,
        id=item.get("id"),
        visibility=DIRECT_MESSAGE,
        subjects=subjects,
        data=data,
        occurred_at=item.get("created_at"),
    )


def x_account(body: JSONObject, issuer: str) -> Account:
    """``/2/users/me`` answers ``{"data": {"id", "name", "username"}}``."""
    user = mapping(body.get("data"))
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("the /2/users/me answer carries no id")
    username = user.get("username")
    return Account(subject=user_id, name=f"@{username}" if username else user_id, issuer=issuer)


PROVIDER = Provider(
    name="x",
    display_name="X",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            authorize_url="https://x.com/i/oauth2/authorize",
            token_url=f"{API}/oauth2/token",
            revoke_url=f"{API}/oauth2/revoke",
            userinfo_url=f"{API}/users/me",
            api_base_url=API,
        ),
        scopes=SCOPES,
        client_auth=ClientAuth.CLIENT_SECRET_BASIC,
        rotates_refresh_token=True,
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/users/me",
            normalize=normalize_profile,
            items_path=(),
            query={"user.fields": "id,name,username,protected,created_at,description"},
            description="The linked account itself.",
        ),
        "mentions": Resource(
            name="mentions",
            path="/users/{account_id}/mentions",
            normalize=normalize_mention,
            query={
                "expansions": "author_id",
                "user.fields": USER_FIELDS,
                "tweet.fields": "id,text,created_at,author_id,conversation_id,withheld",
            },
            pagination=_MENTION_PAGES,
            extract=with_users,
            description="Posts that mention the linked account; protected authors are dropped.",
        ),
        "dm_events": Resource(
            name="dm_events",
            path="/dm_events",
            normalize=normalize_dm_event,
            query={
                "event_types": "MessageCreate",
                "expansions": "sender_id",
                "user.fields": USER_FIELDS,
                "dm_event.fields": (
                    "id,text,event_type,created_at,sender_id,participant_ids,dm_conversation_id"
                ),
            },
            pagination=_PAGES,
            extract=with_users,
            description="Direct messages of the linked account.",
        ),
    },
    account_from_claims=x_account,
    errors=ERRORS,
    scope_descriptions={
        "tweet.read": "Read posts that mention you",
        "users.read": "See your profile and the authors of those posts",
        "dm.read": "Read your direct messages",
        "offline.access": "Stay connected without asking you again",
    },
)
