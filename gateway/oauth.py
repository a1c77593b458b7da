"""The OAuth 2.0 client side: authorization URLs, code exchange, refresh, revocation.

Specs followed: RFC 6749 (§4.1 code grant, §5 token responses, §6 refresh),
RFC 7636 (PKCE, S256 only), RFC 7009 (revocation), RFC 9700 (security BCP).
Token values travel in :class:`TokenSet`, whose ``repr`` hides them, so a
stray log line or traceback cannot print one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.errors import UpstreamError, UpstreamMalformed, UpstreamUnavailable
from providers.base import ClientAuth, Provider, RevokeStyle

VERIFIER_LENGTH = 64  # RFC 7636 §4.1: 43..128 characters
STATE_LENGTH = 43
NONCE_LENGTH = 32
MAX_OAUTH_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str = field(repr=False)
    # For ClientAuth.SIGNED_SECRET_POST: who signs the client-secret JWT, and with what.
    team_id: str = ""
    key_id: str = ""
    private_key_pem: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token endpoint's successful answer (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: int | None  # epoch seconds
    refresh_token: str | None = field(default=None, repr=False)
    scope: tuple[str, ...] = ()
    id_token: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer. ``error`` is the protocol code."""

    INVALID_GRANT = "invalid_grant"

    def __init__(
        self,
        error: str,
        description: str = "",
        status: int = 400,
        body: Mapping[str, Any] | None = None,
    ):
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status
        self.body = dict(body or {})  # for the provider's ErrorTable.token rules


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """The secrets of one round trip; the gateway keeps them server-side."""

    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    nonce: str | None = field(repr=False)
    url: str = field(repr=False)


def begin_authorization(
    provider: Provider, client: ClientCredentials, redirect_uri: str
) -> AuthorizationRequest:
    """Build the authorization request: random state, PKCE S256 always, nonce for OIDC."""
    state = generate_token(STATE_LENGTH)
    verifier = generate_token(VERIFIER_LENGTH)
    nonce = generate_token(NONCE_LENGTH) if provider.oauth.oidc else None
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": provider.oauth.scope_separator.join(provider.oauth.scopes),
        "state": state,
        # RFC 9700 §2.1.1: PKCE with S256 for every client, confidential ones too.
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **provider.oauth.extra_authorize_params,
    }
    if provider.oauth.response_mode:
        params["response_mode"] = provider.oauth.response_mode  # OAuth 2.0 Form Post §2
    if nonce:
        params["nonce"] = nonce
    endpoint = provider.oauth.endpoints.authorize_url
    separator = "&" if "?" in endpoint else "?"
    return AuthorizationRequest(
        state=state,
        code_verifier=verifier,
        nonce=nonce,
        url=endpoint + separator + urlencode(params),
    )


async def exchange_code(
    http: httpx.AsyncClient,
    provider: Provider,
    client: ClientCredentials,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
) -> TokenSet:
    """RFC 6749 §4.1.3 with the RFC 7636 §4.5 verifier."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    return await _token_request(http, provider, client, form)


async def refresh_tokens(
    http: httpx.AsyncClient, provider: Provider, client: ClientCredentials, refresh_token: str
) -> TokenSet:
    """RFC 6749 §6. A provider that omits a new refresh token keeps the old one valid."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await _token_request(http, provider, client, form)


async def revoke_token(
    http: httpx.AsyncClient,
    provider: Provider,
    client: ClientCredentials,
    token: str,
    token_type_hint: str,
) -> bool:
    """RFC 7009 §2.1. Returns False when the provider has no revocation endpoint."""
    url = provider.oauth.endpoints.revoke_url
    if not url:
        return False
    form = {"token": token, "token_type_hint": token_type_hint}
    try:
        if provider.oauth.revoke_style is RevokeStyle.DELETE_WITH_BEARER:
            # Not RFC 7009: the grant ends by deleting it with the access token
            # (Facebook DELETE /me/permissions); there is nothing else to revoke.
            if token_type_hint != "access_token":  # noqa: S105 - a hint name
                return False
            response = await http.delete(url, headers={"Authorization": f"Bearer {token}"})
        else:
            method = provider.oauth.revoke_client_auth  # e.g. Calendly: credentials in the body
            response = await http.post(url, **_client_auth(provider, client, form, method=method))
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"revocation endpoint unreachable ({type(exc).__name__})"
        ) from None
    # §2.2: 200 means revoked (or already invalid); 503 asks us to retry later.
    if response.status_code == 503:
        raise UpstreamUnavailable("the provider asked to retry the revocation later")
    if response.status_code >= 400:
        raise UpstreamError(f"revocation refused with HTTP {response.status_code}")
    return True


async def _token_request(
    http: httpx.AsyncClient, provider: Provider, client: ClientCredentials, form: dict[str, str]
) -> TokenSet:
    try:
        response = await http.post(
            provider.oauth.endpoints.token_url,
            headers={"Accept": "application/json"},
            **_client_auth(provider, client, form),
        )
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
    body = _json_object(response)
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"token endpoint answered HTTP {response.status_code}")
    if provider.oauth.token_answer is not None:  # e.g. Instagram's data-list wrapper
        body = dict(provider.oauth.token_answer(body))
    if response.status_code >= 400 or "error" in body:
        error = body.get("error")
        if not isinstance(error, str):
            raise UpstreamMalformed(f"token endpoint answered HTTP {response.status_code}")
        raise OAuthError(error, str(body.get("error_description", "")), response.status_code, body)
    return parse_token_response(body, now=int(time.time()))


def parse_token_response(body: Mapping[str, Any], *, now: int) -> TokenSet:
    """RFC 6749 §5.1 fields, strictly typed; anything else is ``upstream-malformed``."""
    access_token = body.get("access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(access_token, str) or not access_token or not isinstance(token_type, str):
        raise UpstreamMalformed("token response without an access_token")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some providers send it as a string
    if expires_in is not None and not isinstance(expires_in, int):
        raise UpstreamMalformed("token response with a non-numeric expires_in")
    refresh_token = body.get("refresh_token")
    id_token = body.get("id_token")
    scope = body.get("scope", "")
    return TokenSet(
        access_token=access_token,
        token_type=token_type,
        expires_at=now + expires_in if expires_in is not None else None,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        scope=tuple(str(scope).replace(",", " ").split()) if scope else (),
        id_token=id_token if isinstance(id_token, str) else None,
        extra={k: v for k, v in body.items() if k not in _TOKEN_FIELDS},
    )


_TOKEN_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token"}
)


def _client_auth(
    provider: Provider,
    client: ClientCredentials,
    form: dict[str, str],
    *,
    method: ClientAuth | None = None,
) -> dict[str, Any]:
    """RFC 6749 §2.3.1: Basic by default, credentials in the body where a provider wants that."""
    method = method or provider.oauth.client_auth
    if method is ClientAuth.CLIENT_SECRET_BASIC:
        return {"data": form, "auth": httpx.BasicAuth(client.client_id, client.client_secret)}
    if method is ClientAuth.CLIENT_SECRET_POST:
        return {
            "data": {**form, "client_id": client.client_id, "client_secret": client.client_secret}
        }
    if method is ClientAuth.SIGNED_SECRET_POST:
        secret = signed_client_secret(provider, client, now=int(time.time()))
        return {"data": {**form, "client_id": client.client_id, "client_secret": secret}}
    return {"data": {**form, "client_id": client.client_id}}


def signed_client_secret(provider: Provider, client: ClientCredentials, *, now: int) -> str:
    """A client-secret JWT minted for one token request (Apple "Creating a client secret").

    ``iss`` is the team id, ``sub`` the client id, ``aud`` the provider's; the
    header names the key (``kid``). Short-lived, so a leaked one soon stops working.
    """
    spec = provider.oauth.client_secret_jwt
    if spec is None or not (client.team_id and client.key_id and client.private_key_pem):
        raise UpstreamError(f"{provider.name} needs team_id, key_id and private_key_file")
    key = ECKey.import_key(client.private_key_pem)
    claims = {
        "iss": client.team_id,
        "sub": client.client_id,
        "aud": spec.audience,
        "iat": now,
        "exp": now + spec.lifetime,
    }
    header = {"alg": spec.algorithm, "kid": client.key_id}
    return jwt.encode(header, claims, key, algorithms=[spec.algorithm])


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > MAX_OAUTH_BODY:
        raise UpstreamMalformed("the provider's answer is too large")
    try:
        body = response.json()
    except ValueError:
        raise UpstreamMalformed(
            f"the provider answered HTTP {response.status_code} without JSON"
        ) from None
    if not isinstance(body, dict):
        raise UpstreamMalformed("the provider's answer is not a JSON object")
    return body


async def fetch_json(
    http: httpx.AsyncClient, url: str, *, bearer: str | None = None
) -> dict[str, Any]:
    """GET a JSON document (discovery, JWKS, userinfo), translating transport failures."""
    headers = {"Accept": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"{url} unreachable ({type(exc).__name__})") from None
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"{url} answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise UpstreamError(f"{url} answered HTTP {response.status_code}")
    return _json_object(response)
