"""The sandbox declared as a provider, exactly like a real one: the gateway gets no hints."""

from __future__ import annotations

from providers.base import (
    ClientAuth,
    Endpoints,
    OAuthSettings,
    PageStyle,
    Pagination,
    Param,
    Provider,
    Resource,
    ValuesFrom,
    oidc_account,
)
from providers.sandbox.normalize import (
    normalize_comment,
    normalize_conversation,
    normalize_event,
    normalize_post,
    normalize_profile,
)
from providers.sandbox.scopes import SCOPE_DESCRIPTIONS
from providers.sandbox.settings import DEFAULT_ISSUER, MAX_PAGE_SIZE

# Read-only and least: everything the resources below need, nothing more (minimal-scope).
SCOPES = ("openid", "email", "profile", "posts.read", "messages.read", "calendar.read")

_PAGED = Pagination(
    style=PageStyle.PAGE_TOKEN,
    token_param="page_token",  # noqa: S106 - a parameter name, not a secret
    token_path=("paging", "next_page_token"),
    limit_param="limit",
    max_limit=MAX_PAGE_SIZE,
)

PROVIDER = Provider(
    name="sandbox",
    display_name="Sandbox (local demo provider)",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            issuer=DEFAULT_ISSUER,
            authorize_url=f"{DEFAULT_ISSUER}/authorize",
            token_url=f"{DEFAULT_ISSUER}/token",
            revoke_url=f"{DEFAULT_ISSUER}/revoke",
            userinfo_url=f"{DEFAULT_ISSUER}/userinfo",
            jwks_url=f"{DEFAULT_ISSUER}/jwks",
            api_base_url=f"{DEFAULT_ISSUER}/api",
        ),
        scopes=SCOPES,
        client_auth=ClientAuth.CLIENT_SECRET_BASIC,
        oidc=True,
        rotates_refresh_token=True,
        supports_iss_parameter=True,
        id_token_algorithms=("RS256",),
    ),
    resources={
        "profile": Resource(
            name="profile",
            path="/me",
            normalize=normalize_profile,
            items_path=(),
            description="The linked account holder and their page.",
        ),
        "posts": Resource(
            name="posts",
            path="/posts",
            normalize=normalize_post,
            pagination=_PAGED,
            description="Posts on the linked page, by the page and by End Users.",
        ),
        "comments": Resource(
            name="comments",
            path="/posts/{post_id}/comments",
            normalize=normalize_comment,
            params=(
                Param(
                    name="post_id",
                    pattern=r"post_[0-9]{1,12}",
                    values_from=ValuesFrom(resource="posts"),
                ),
            ),
            pagination=_PAGED,
            description="Comments on one of the page's posts.",
        ),
        "conversations": Resource(
            name="conversations",
            path="/conversations",
            normalize=normalize_conversation,
            pagination=_PAGED,
            description="Direct-message threads people started with the page.",
        ),
        "events": Resource(
            name="events",
            path="/events",
            normalize=normalize_event,
            pagination=_PAGED,
            description="Calendar events and bookings.",
        ),
    },
    account_from_claims=oidc_account,
    scope_descriptions=SCOPE_DESCRIPTIONS,
)
