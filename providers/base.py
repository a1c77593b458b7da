"""What a provider module declares: its OAuth settings and its resources.

A provider is data plus a few small pure functions. The gateway does all I/O:
it builds requests from these declarations, hands the parsed JSON back to the
provider's ``normalize`` functions and judges the records they return.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from policies.vocabulary import Record

JSONObject = Mapping[str, Any]


class ClientAuth(enum.StrEnum):
    """Token-endpoint client authentication (RFC 6749 §2.3, OIDC Core §9)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name (RFC 6749 §2.3.1)
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name
    NONE = "none"  # public client: PKCE only


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where a provider lives. Every field can be overridden from configuration."""

    authorize_url: str
    token_url: str
    api_base_url: str
    revoke_url: str | None = None
    userinfo_url: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None

    OVERRIDABLE = (
        "authorize_url",
        "token_url",
        "revoke_url",
        "userinfo_url",
        "jwks_url",
        "api_base_url",
        "issuer",
    )

    def with_overrides(self, overrides: Mapping[str, str]) -> Endpoints:
        known = {k: v for k, v in overrides.items() if k in self.OVERRIDABLE and v}
        return replace(self, **known)


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthSettings:
    endpoints: Endpoints
    scopes: tuple[str, ...]
    client_auth: ClientAuth = ClientAuth.CLIENT_SECRET_BASIC
    oidc: bool = False
    rotates_refresh_token: bool = False
    supports_iss_parameter: bool = False  # RFC 9207 advertised
    id_token_algorithms: tuple[str, ...] = ("RS256",)
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    scope_separator: str = " "


class PageStyle(enum.StrEnum):
    """How a provider pages through a collection."""

    NONE = "none"  # a single object or a single page
    PAGE_TOKEN = "page_token"  # noqa: S105 - a style name; opaque token from the body, sent back as a query parameter
    NEXT_LINK = "next_link"  # absolute URL of the next page in the body
    OFFSET = "offset"  # numeric offset


@dataclass(frozen=True, slots=True, kw_only=True)
class Pagination:
    style: PageStyle = PageStyle.NONE
    token_param: str = ""  # query parameter carrying the page token / offset
    token_path: tuple[str, ...] = ()  # where the next token or link sits in the body
    limit_param: str | None = None
    max_limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """A resource parameter a caller must (or may) give, e.g. the post id of comments."""

    name: str
    pattern: str = r"[A-Za-z0-9_.:-]{1,128}"
    required: bool = True

    def accepts(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalizeContext:
    """The tenancy facts a record is tagged with when it is born."""

    customer_id: str
    connection_id: str
    provider: str
    resource: str
    fetched_at: datetime
    account_id: str = ""  # the linked account's own id at the provider


Normalizer = Callable[[JSONObject, NormalizeContext], Record]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    name: str
    path: str  # relative to api_base_url; may contain {param} and {account_id}
    normalize: Normalizer
    items_path: tuple[str, ...] = ("data",)  # () means the body itself is the single item
    query: Mapping[str, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    pagination: Pagination = Pagination()
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Who was linked: the account's stable id at the provider and a display name."""

    subject: str
    name: str
    issuer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    name: str
    display_name: str
    oauth: OAuthSettings
    resources: Mapping[str, Resource]
    # Derives the linked account from ID-token claims (OIDC) or from the userinfo body.
    account_from_claims: Callable[[JSONObject, str], Account]
    scope_descriptions: Mapping[str, str] = field(default_factory=dict)

    def with_endpoints(self, overrides: Mapping[str, str]) -> Provider:
        endpoints = self.oauth.endpoints.with_overrides(overrides)
        return replace(self, oauth=replace(self.oauth, endpoints=endpoints))

    def with_scopes(self, scopes: tuple[str, ...]) -> Provider:
        return replace(self, oauth=replace(self.oauth, scopes=scopes))


def dig(body: JSONObject, path: tuple[str, ...]) -> Any:
    """Follow ``path`` into nested JSON objects; ``None`` where anything is missing."""
    current: Any = body
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def oidc_account(claims: JSONObject, issuer: str) -> Account:
    """The account of an OIDC sign-in: ``sub`` is the stable id (OIDC Core §5.7)."""
    subject = str(claims["sub"])
    name = claims.get("email") or claims.get("name") or claims.get("preferred_username") or subject
    return Account(subject=subject, name=str(name), issuer=issuer)
