"""What a provider module declares: its OAuth settings and its resources.

A provider is data plus a few small pure functions. The gateway does all I/O:
it builds requests from these declarations, hands the parsed JSON back to the
provider's ``normalize`` functions and judges the records they return.

Hooks a provider uses for its quirks (the gateway has no provider names in it):

``Provider.errors`` (:class:`ErrorTable`)
    How the provider's error bodies map to the gateway's kinds (:class:`ErrorKind`):
    ``api`` rules for resource calls (``UpstreamClient``), ``token`` rules for the
    token endpoint (``gateway/refresh.py``). Each :class:`ErrorRule` names HTTP
    statuses and/or a JSON path whose value must be one of ``values``; lists on
    the path fan out, so ``("error", "errors", "reason")`` reads every Google
    reason. The first matching rule wins; when none matches, the generic
    behaviour stays (API: 401 re-auth, 429/5xx retry, other 4xx permanent;
    token endpoint: ``invalid_grant`` re-auth, anything else retry later).
    Example: ``ErrorRule(kind=ErrorKind.REAUTH, path=("error", "code"), values=frozenset({190}))``.
    A rule's ``wait_header`` names a header holding seconds until the provider's
    window reopens (Calendly ``X-RateLimit-Reset``), read when no Retry-After came;
    its ``wait_reader`` reads the wait out of a provider's own usage headers (Meta's
    ``X-Business-Use-Case-Usage``) when neither says it.

``OAuthSettings.issuer_claims``
    For a multi-tenant issuer: ``Endpoints.issuer`` is a template such as
    ``https://login.microsoftonline.com/{tenantid}/v2.0`` and
    ``issuer_claims={"tenantid": "tid"}`` fills each placeholder from the ID
    token's own claim before the exact ``iss`` comparison (OIDC Core §3.1.3.7 (2)).
    Empty means plain equality with ``Endpoints.issuer``.

``OAuthSettings.client_auth = ClientAuth.SIGNED_SECRET_POST`` with ``client_secret_jwt``
    The client secret is a short-lived JWT the gateway signs per token request
    (:class:`ClientSecretJWT`: algorithm, audience, lifetime) with the key named
    by the provider's settings (``team_id``, ``key_id``, ``private_key_file``);
    it is sent as ``client_secret`` in the form body (Apple).

``OAuthSettings.response_mode = "form_post"``
    The provider returns to ``POST /oauth/callback`` with a form body (OAuth 2.0
    Form Post Response Mode); the callback is checked exactly like the GET, and
    the browser-binding cookie is set ``SameSite=None`` for that round trip.

``Provider.account_from_callback``
    Refines the linked :class:`Account` from the callback's own parameters,
    e.g. Apple's ``user`` JSON with the name, sent on first consent only.

``Provider.api_headers``
    Fixed headers sent with every API call (LinkedIn ``LinkedIn-Version``).

``Provider.api_version`` (:class:`ApiVersion`)
    The API version the provider is pinned to, which an operator may move per
    provider (``api_version``, gateway.config; refused at start-up unless it has
    the provider's form). It travels in a header (``ApiVersion.header``: LinkedIn's
    ``LinkedIn-Version`` in ``api_headers``) or, without one, as a path segment of
    every endpoint URL that carries it (the Graph API's ``/v26.0/``, in the OAuth
    dialog and token URLs as well as the API's), so all of them move together.

``OAuthSettings.extra_authorize_params``
    Fixed parameters on the authorization request (Google ``access_type=offline``).

``OAuthSettings.long_lived_exchange`` (:class:`TokenExchange`)
    Right after the code exchange, trade the short-lived access token for a
    long-lived one at a provider grant (Meta ``fb_exchange_token``, Instagram
    ``ig_exchange_token``); the long-lived token is the one stored. None: keep it.

``OAuthSettings.token_answer``
    Reshapes the token endpoint's answer into RFC 6749 §5.1 / §5.2 form before
    it is read, for a provider whose answer is not (Instagram's code exchange
    answers ``{"data": [{"access_token", "user_id", "permissions"}]}``, and
    refuses with ``{"error_type", "error_message"}``). None: as sent.

``OAuthSettings.refresh_by_exchange`` (:class:`TokenExchange`)
    The provider has no refresh token: refreshing trades the current access
    token for a new one (Instagram ``ig_refresh_token``). None: RFC 6749 §6.

``OAuthSettings.revoke_style`` / ``revoke_client_auth``
    ``RevokeStyle.DELETE_WITH_BEARER``: disconnecting sends ``DELETE revoke_url``
    with the access token as bearer (Facebook ``DELETE /me/permissions``) instead
    of an RFC 7009 form. ``revoke_client_auth`` authenticates the revocation
    request differently from the token endpoint (Calendly wants the credentials
    in the body there). Defaults: RFC 7009, same client authentication.

``Provider.scoped_tokens`` (:class:`ScopedTokens`) with ``Resource.scoped_token_param``
    Per-object tokens the provider issues under the user's grant (Meta Page
    access tokens from ``/me/accounts``): fetched after linking, sealed by the
    vault per connection, and used as the bearer of every resource that names
    the object through ``scoped_token_param`` (e.g. ``page_id``).

``Resource.extract``
    Takes a page body apart into items when ``items_path`` is not enough, e.g. to
    join X's ``includes.users`` onto each post so its normalizer sees the author.

``NormalizeContext.drops`` with ``providers.assembly.without_content``
    As soon as a normalizer knows an item's visibility: when ``ctx.drops(visibility)``
    (the records service reads pages so, and drops whatever is neither public nor
    direct), return ``without_content(ctx, id=..., visibility=...)`` instead of
    assembling fields and subjects nobody reads. A normalizer without the check
    is as correct, only slower; tests/providers holds every provider's reading
    with it to the pinned full records and to their page decisions.

``Provider.kept_claims`` (:class:`KeptClaims`) with ``Resource.from_kept_claims``
    For a provider with no userinfo endpoint (Apple), the linked identity's
    claims are kept at connect time, sealed by the vault per connection: the
    named ID-token claims, plus what the callback's own parameters add (Apple's
    first-consent ``user`` JSON), with ``sticky`` claims carried over from the
    earlier link of the same account when a later one lacks them. A resource
    with ``from_kept_claims`` is served from them instead of an API call, then
    normalized, judged and audited like any other page. They are deleted with the
    connection's tokens.

``Param.values_from`` (:class:`ValuesFrom`)
    Where the gateway finds a required parameter's values when it walks a
    connection by itself (a portability request), instead of a caller giving
    them: the ids of the records of another resource of the same connection
    (``ValuesFrom(resource="posts")`` for the sandbox's ``comments``; ``capture``
    takes the value out of the id with a one-group regex, e.g. the UUID at the
    end of a Calendly event URI), or the objects the connection holds scoped
    tokens for (``ValuesFrom(scoped_objects=True)``, Meta Page ids). The parent
    resource is fetched with the parameters already chosen, so a parameter
    listed later may come from a resource that needs an earlier one. None: only
    a caller can give it, and the walk names the resource as not fetched.

``Provider.notifications`` (:class:`Notifications`)
    How to read what the provider pushes when a grant ends at its side (the End
    User removed the app, revoked consent, deleted the account, changed the
    email it shares). ``signed_by`` says how the gateway checks the message
    before anything else: ``PROVIDER_KEYS``, a JWT in the JSON field ``message_field``
    signed with the provider's JWKS (``jwks_url``; ``iss``, ``aud`` = client id
    and ``exp`` checked; Apple); or ``CLIENT_SECRET``, a form field ``message_field``
    that ``open_signed(value, client_secret)`` opens, checking its HMAC (Meta's
    ``signed_request``). ``read(payload, deletion)`` then turns the verified
    payload into one :class:`ProviderNotification`: which account (the
    connection's subject), which :class:`NotificationEvent`, when it was issued
    (bounded by ``max_age``), and any kept claims it updates; it raises
    ``ValueError`` for a payload it does not understand. ``deletion`` is true
    on the provider's data-deletion callback (``deletion_callback``: Meta).
    The gateway's one route for all of them is gateway/provider_notifications.py.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from policies.value_type import value_type
from policies.vocabulary import Record, Visibility

JSONObject = Mapping[str, Any]


class ClientAuth(enum.StrEnum):
    """Token-endpoint client authentication (RFC 6749 §2.3, OIDC Core §9)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name (RFC 6749 §2.3.1)
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name
    # The client_secret is a JWT signed per request with the provider's private key
    # (Apple "Creating a client secret"); sent in the body like client_secret_post.
    SIGNED_SECRET_POST = "signed_secret_post"  # noqa: S105 - a method name
    NONE = "none"  # public client: PKCE only


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSecretJWT:
    """How to mint a client-secret JWT: ``iss`` = team id, ``sub`` = client id, ``kid`` header."""

    audience: str
    algorithm: str = "ES256"
    lifetime: int = 300  # seconds; short, one per token request


class ErrorKind(enum.StrEnum):
    """What a provider's error means for the gateway."""

    REAUTH = "reauth"  # the token or grant is dead: refresh (API) or re-consent (token endpoint)
    RETRY_LATER = "retry_later"  # transient or paced: try again after a delay
    PERMANENT = "permanent"  # retrying will not help; the connection itself is fine
    USAGE_CAPPED = "usage_capped"  # a quota is spent until its period ends: never retried now


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRule:
    """One line of a provider's error table.

    Matches when the HTTP status is in ``statuses`` (empty: any error status) and
    the JSON body has, at ``path``, a value in ``values`` (empty ``path``: the
    status alone decides; empty ``values``: any value present there).
    """

    kind: ErrorKind
    path: tuple[str, ...] = ()
    values: frozenset[str | int] = frozenset()
    statuses: frozenset[int] = frozenset()
    retry_after: float | None = None  # seconds, when the provider sends no Retry-After
    # A header carrying *seconds until* the provider's window reopens, read when there
    # is no Retry-After (Calendly ``X-RateLimit-Reset``); ``retry_after`` is the fallback.
    wait_header: str = ""
    # Seconds to wait read from the provider's own headers in another form (Meta's
    # usage header, in minutes); None when they say nothing usable. Pure, no I/O.
    wait_reader: Callable[[Mapping[str, str]], float | None] | None = None

    def matches(self, status: int, body: Any) -> str | None:
        """The matched provider code (safe to log), or None."""
        if self.statuses and status not in self.statuses:
            return None
        if not self.path:
            return str(status)
        for found in _values_at(body, self.path):
            if isinstance(found, bool) or not isinstance(found, str | int):
                continue
            if not self.values or found in self.values:
                return str(found)
        return None


@dataclass(frozen=True, slots=True)
class ErrorVerdict:
    kind: ErrorKind
    code: str  # the provider's code that decided it (an error name, never a token)
    retry_after: float | None = None
    wait_header: str = ""
    wait_reader: Callable[[Mapping[str, str]], float | None] | None = None

    def wait(self, headers: Mapping[str, str]) -> float | None:
        """Seconds to wait: the rule's header when it holds whole seconds, then what its
        reader finds, else ``retry_after``."""
        if self.wait_header:
            value = headers.get(self.wait_header, "").strip()
            if value.isdigit():
                return float(value)
        if self.wait_reader is not None:
            found = self.wait_reader(headers)
            if found is not None:
                return found
        return self.retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorTable:
    """A provider's error rules; first match wins, no match keeps the generic behaviour."""

    api: tuple[ErrorRule, ...] = ()
    token: tuple[ErrorRule, ...] = ()

    def classify_api(self, status: int, body: Any) -> ErrorVerdict | None:
        return _first_match(self.api, status, body)

    def classify_token(self, status: int, body: Any) -> ErrorVerdict | None:
        return _first_match(self.token, status, body)


def _first_match(rules: tuple[ErrorRule, ...], status: int, body: Any) -> ErrorVerdict | None:
    for rule in rules:
        code = rule.matches(status, body)
        if code is not None:
            return ErrorVerdict(
                rule.kind, code, rule.retry_after, rule.wait_header, rule.wait_reader
            )
    return None


def _values_at(body: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at ``path``; a list on the way fans out over its items."""
    current = [body]
    for key in path:
        step: list[Any] = []
        for node in current:
            for item in node if isinstance(node, list) else [node]:
                if isinstance(item, Mapping) and key in item:
                    step.append(item[key])
        current = step
    return [v for node in current for v in (node if isinstance(node, list) else [node])]


class RevokeStyle(enum.StrEnum):
    """How a provider is told that a grant ends."""

    RFC7009 = "rfc7009"  # POST revoke_url, form token + token_type_hint
    DELETE_WITH_BEARER = "delete_with_bearer"  # DELETE revoke_url with the access token


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenExchange:
    """A provider grant that trades an access token for another (GET, query parameters).

    ``path`` is resolved against ``api_base_url`` (RFC 3986 §5.2), so a relative
    path stays under the API version and an absolute one (``/access_token``) is
    at the API host's root. ``token_param`` carries the token being traded.
    """

    path: str
    grant_type: str
    token_param: str
    send_client_id: bool = True
    send_client_secret: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopedTokens:
    """Where the per-object tokens are listed, and how to read one entry."""

    path: str  # relative to api_base_url, called with the user's access token
    query: Mapping[str, str] = field(default_factory=dict)
    items_path: tuple[str, ...] = ("data",)
    next_path: tuple[str, ...] = ("paging", "next")  # next-page link, same origin only
    id_field: str = "id"
    token_field: str = "access_token"  # noqa: S105 - a field name
    max_pages: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersion:
    """The API version a provider is pinned to, and what another one must look like."""

    value: str  # the version sent: the built-in default, or the operator's
    pattern: str  # a regex the whole value must match
    form: str  # how a valid value looks, said in the start-up problem ("vNN.N")
    header: str = ""  # sent in this API header; "": a path segment of the endpoint URLs

    def __post_init__(self) -> None:
        if not self.accepts(self.value):
            raise ValueError(f"{self.value!r} is not {self.form}")

    def accepts(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


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

    def with_path_segment(self, old: str, new: str) -> Endpoints:
        """Every URL whose path has the segment ``old`` with ``new`` there instead."""
        moved = {
            name: _replace_segment(url, old, new)
            for name in self.OVERRIDABLE
            if (url := getattr(self, name)) is not None
        }
        return replace(self, **moved)


def _replace_segment(url: str, old: str, new: str) -> str:
    parts = urlsplit(url)
    path = "/".join(new if segment == old else segment for segment in parts.path.split("/"))
    return urlunsplit(parts._replace(path=path))


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
    # Multi-tenant issuers: placeholder in Endpoints.issuer -> the ID-token claim filling it.
    issuer_claims: Mapping[str, str] = field(default_factory=dict)
    client_secret_jwt: ClientSecretJWT | None = None  # with ClientAuth.SIGNED_SECRET_POST
    response_mode: str = ""  # "" (query, RFC 6749 §4.1.2) or "form_post"
    long_lived_exchange: TokenExchange | None = None  # after the code exchange (Meta)
    refresh_by_exchange: TokenExchange | None = None  # no refresh token (Instagram)
    revoke_style: RevokeStyle = RevokeStyle.RFC7009
    revoke_client_auth: ClientAuth | None = None  # None: as at the token endpoint
    # The token endpoint's answer reshaped into RFC 6749 §5.1 form (Instagram's wrapper).
    token_answer: Callable[[JSONObject], JSONObject] | None = None

    def issuer_for(self, claims: Mapping[str, Any]) -> str | None:
        """The issuer these claims must name; None when a placeholder cannot be filled."""
        issuer = self.endpoints.issuer or ""
        for placeholder, claim in self.issuer_claims.items():
            value = claims.get(claim)
            # A tenant id is one path segment; anything else could forge another issuer.
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", value):
                return None
            issuer = issuer.replace("{" + placeholder + "}", value)
        return issuer


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
    # The smallest page the provider accepts (X mentions: ``max_results`` 5 to 100);
    # a smaller limit is refused here rather than sent for the provider to refuse.
    min_limit: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuesFrom:
    """Where a parameter's values are found: another resource's record ids, or scoped objects."""

    resource: str = ""  # the ids of this resource's records (same connection)
    capture: str = ""  # a regex whose one group is the value inside the record id; "": the id
    scoped_objects: bool = False  # the objects the connection holds scoped tokens for

    def __post_init__(self) -> None:
        if bool(self.resource) == self.scoped_objects:
            raise ValueError("ValuesFrom names either a resource or scoped_objects")
        if self.capture and re.compile(self.capture).groups != 1:
            raise ValueError("ValuesFrom.capture needs exactly one group")

    def value_of(self, record_id: str) -> str | None:
        """The parameter value a parent record's id gives, or None when it gives none."""
        if not self.capture:
            return record_id
        found = re.fullmatch(self.capture, record_id)
        return found.group(1) if found else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """A resource parameter a caller must (or may) give, e.g. the post id of comments."""

    name: str
    # Values go into the resource's URL path: the default refuses a dot segment ("." or
    # "..", RFC 3986 §5.2.4) and any "..", which would move the request up the provider's
    # path. A provider with a tighter shape for its ids declares it.
    pattern: str = r"(?!\.{1,2}$)(?!.*\.\.)[A-Za-z0-9_.:-]{1,128}"
    required: bool = True
    values_from: ValuesFrom | None = None  # where a walk of the connection finds values

    def accepts(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


@value_type(kw_only=True)  # built for every page read: see policies.value_type
class NormalizeContext:
    """The tenancy facts a record is tagged with when it is born.

    ``releasable`` is set by a reader that judges every record it normalizes
    (the records service): the visibilities its policy may release
    (``PolicyEngine.RELEASABLE_VISIBILITIES``). A record of any other
    visibility is dropped by rule ``public-or-direct`` whatever its fields and
    subjects hold, so a normalizer builds it without them
    (:func:`providers.assembly.without_content`) once :meth:`drops` says so.
    Left None, every item is normalized in full.
    """

    customer_id: str
    connection_id: str
    provider: str
    resource: str
    fetched_at: datetime
    account_id: str = ""  # the linked account's own id at the provider
    scope_id: str = ""  # the object whose scoped token read the page (a Facebook Page id)
    releasable: frozenset[Visibility] | None = None

    def drops(self, visibility: Visibility) -> bool:
        """True when the reader drops a record of ``visibility`` unread, by that alone."""
        releasable = self.releasable
        return releasable is not None and visibility not in releasable


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
    scoped_token_param: str = ""  # the param naming the object whose scoped token is the bearer
    extract: Callable[[JSONObject], Any] | None = None  # body -> items, instead of items_path
    from_kept_claims: bool = False  # the page is the kept identity claims (Provider.kept_claims)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptClaims:
    """Which claims of the linked identity the gateway keeps at connect time."""

    id_token: tuple[str, ...]  # ID-token claims kept as they are
    # Claims the callback's own parameters add (Apple's first-consent ``user`` JSON);
    # the ID token's signed claims win over them where both name one.
    from_callback: Callable[[Mapping[str, str]], JSONObject] | None = None
    sticky: tuple[str, ...] = ()  # kept from the earlier link when this one lacks them

    def merge(
        self,
        id_claims: JSONObject,
        params: Mapping[str, str],
        earlier: JSONObject | None,
    ) -> dict[str, Any]:
        """The claims to keep for this link; a pure function of its three inputs."""
        kept: dict[str, Any] = dict(self.from_callback(params)) if self.from_callback else {}
        kept.update({name: id_claims[name] for name in self.id_token if name in id_claims})
        for name in self.sticky:
            if name not in kept and earlier is not None and name in earlier:
                kept[name] = earlier[name]
        return kept


class NotificationSigner(enum.StrEnum):
    """Who signs a provider's notifications, i.e. what the gateway verifies them with."""

    PROVIDER_KEYS = "provider_keys"  # a JWT signed with the provider's published JWKS
    CLIENT_SECRET = "client_secret"  # noqa: S105 - a method name; HMAC with our client secret


class NotificationEvent(enum.StrEnum):
    """What a provider notification means for the connections of its account."""

    GRANT_ENDED = "grant_ended"  # the End User removed the app: end the grant
    ACCOUNT_DELETED = "account_deleted"  # end the grant and delete what is kept of the account
    CLAIMS_CHANGED = "claims_changed"  # update the kept identity claims (Apple email relay)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderNotification:
    """One verified notification, read by the provider's ``Notifications.read``."""

    subject: str  # the account's id at the provider: the connection's subject
    event: NotificationEvent
    kind: str  # the provider's own name for it ("consent-revoked"): safe to log and audit
    issued_at: float  # seconds since the epoch, as the provider signed it
    # When the change happened at the provider (seconds; Apple's events.event_time),
    # if it says: CLAIMS_CHANGED is applied only when newer than the last one applied.
    event_time: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)  # CLAIMS_CHANGED: the new values


@dataclass(frozen=True, slots=True, kw_only=True)
class Notifications:
    """How a provider's grant-ended notifications are verified and read."""

    signed_by: NotificationSigner
    message_field: str  # the JSON (PROVIDER_KEYS) or form (CLIENT_SECRET) field holding the message
    read: Callable[[JSONObject, bool], ProviderNotification]
    # CLIENT_SECRET: (signed value, client secret) -> payload; raises ValueError when forged.
    open_signed: Callable[[str, str], JSONObject] | None = None
    algorithms: tuple[str, ...] = ("RS256",)  # PROVIDER_KEYS: the JWS algorithms accepted
    # Seconds a notification stays acceptable after it was issued: long enough for the
    # provider to redeliver after our outage (replays change nothing; see
    # gateway/provider_notifications.py). Each provider declares its own.
    max_age: int
    deletion_callback: bool = False  # has a data-deletion callback answered with a status URL


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Who was linked: the account's stable id at the provider and a display name.

    ``alias`` is a second id the provider has for the same account, when its
    notifications might name the account by that one instead (Instagram: /me
    ``id`` beside ``user_id``); ``""`` when there is none.
    """

    subject: str
    name: str
    issuer: str
    alias: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    name: str
    display_name: str
    oauth: OAuthSettings
    resources: Mapping[str, Resource]
    # Derives the linked account from ID-token claims (OIDC) or from the userinfo body.
    account_from_claims: Callable[[JSONObject, str], Account]
    scope_descriptions: Mapping[str, str] = field(default_factory=dict)
    errors: ErrorTable = ErrorTable()
    # Fixed headers on every API call (LinkedIn's ``LinkedIn-Version``); never credentials.
    api_headers: Mapping[str, str] = field(default_factory=dict)
    # The API version it is pinned to and where that travels (a header or the URL path).
    api_version: ApiVersion | None = None
    # Refines the account from the callback's parameters (Apple's first-consent ``user``).
    account_from_callback: Callable[[Account, Mapping[str, str]], Account] | None = None
    scoped_tokens: ScopedTokens | None = None  # per-object tokens (Meta Page tokens)
    kept_claims: KeptClaims | None = None  # identity claims kept at connect time (Apple)
    notifications: Notifications | None = None  # grant-ended notifications it pushes

    def with_endpoints(self, overrides: Mapping[str, str]) -> Provider:
        endpoints = self.oauth.endpoints.with_overrides(overrides)
        return replace(self, oauth=replace(self.oauth, endpoints=endpoints))

    def with_scopes(self, scopes: tuple[str, ...]) -> Provider:
        return replace(self, oauth=replace(self.oauth, scopes=scopes))

    def with_api_version(self, version: str) -> Provider:
        """The provider pinned to ``version`` instead: in its version header, or in every
        endpoint URL that carried the old one as a path segment."""
        pinned = self.api_version
        if pinned is None:
            raise ValueError(f"{self.name} pins no API version")
        moved = replace(pinned, value=version)  # ValueError unless it has the form
        if pinned.header:
            headers = {**self.api_headers, pinned.header: version}
            return replace(self, api_headers=headers, api_version=moved)
        endpoints = self.oauth.endpoints.with_path_segment(pinned.value, version)
        return replace(self, oauth=replace(self.oauth, endpoints=endpoints), api_version=moved)


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
