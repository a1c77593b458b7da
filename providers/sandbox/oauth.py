"""The OAuth 2.0 / OpenID Connect endpoints: discovery, JWKS, authorize, token, revoke, userinfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from providers.sandbox import bearer, pkce
from providers.sandbox.clients import authenticate_client
from providers.sandbox.demo_data import DEMO_USER_ID, DemoAccount
from providers.sandbox.errors import (
    AccessDenied,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnsupportedGrantType,
    UnsupportedResponseType,
)
from providers.sandbox.faults import AuthorizeFault, Faults
from providers.sandbox.form import read_form, single_valued
from providers.sandbox.grants import AuthorizationRequest, Grant, GrantStore, IssuedTokens
from providers.sandbox.pages import consent_page, error_page
from providers.sandbox.scopes import SUPPORTED_SCOPES
from providers.sandbox.settings import SandboxSettings
from providers.sandbox.stats import Stats
from providers.sandbox.tokens import ALGORITHM, KeyRing, at_hash, sign_id_token

# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class AuthorizationServer:
    """The endpoints of the sandbox's authorization server, bound to its state."""

    def __init__(
        self,
        *,
        settings: SandboxSettings,
        keys: KeyRing,
        grants: GrantStore,
        faults: Faults,
        stats: Stats,
        accounts: Mapping[str, DemoAccount],
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.grants = grants
        self.faults = faults
        self.stats = stats
        self.accounts = accounts

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/.well-known/oauth-authorization-server", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize, methods=["GET"]),
            Route("/authorize/decision", self.decide, methods=["POST"], name="decide"),
            Route("/token", self.token, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
            Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
        ]

    # Metadata --------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """OIDC Discovery 1.0 §3 / RFC 8414 §2 metadata."""
        base = self.settings.base_url
        auth_methods = ["client_secret_basic", "client_secret_post"]
        return {
            "issuer": self.settings.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "revocation_endpoint": f"{base}/revoke",
            "scopes_supported": list(SUPPORTED_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
                                 "at_hash", "email", "email_verified", "name"],
        }  # fmt: skip

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(self.metadata())

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.keys.jwks())

    # Authorization endpoint (RFC 6749 §4.1.1) ------------------------------

    async def authorize(self, request: Request) -> Response:
        self.stats.count("authorize.received")
        try:
            params = single_valued(request.query_params.multi_items())
        except InvalidRequest as exc:
            return error_page(exc.description)
        # RFC 6749 §4.1.2.1: with a bad client or redirect URI, never redirect.
        client = self.settings.clients.get(params.get("client_id", ""))
        if client is None:
            return error_page("Unknown client_id.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return error_page("The redirect_uri is not registered for this client.")
        state = params.get("state")
        try:
            held = self._validate(params, redirect_uri)
        except OAuthError as exc:
            return self._redirect(redirect_uri, {**exc.as_json(), "state": state})
        if self.settings.auto_approve:
            return self._approve(held, self._auto_user(params.get("login_hint")))
        request_id = self.grants.hold_request(held)
        return consent_page(
            request_id=request_id,
            client_id=held.client_id,
            scopes=held.scope,
            accounts=list(self.accounts.values()),
            action=str(request.url_for("decide")),
            redirect_uri=redirect_uri,
        )

    def _validate(self, params: Mapping[str, str], redirect_uri: str) -> AuthorizationRequest:
        if params.get("response_type") != "code":
            raise UnsupportedResponseType("only response_type=code is supported")
        state = params.get("state")
        if not state:
            # Optional in RFC 6749, but RFC 9700 §2.1 relies on it for CSRF protection.
            raise InvalidRequest("state is required")
        scope = tuple(params.get("scope", "").split())
        if not scope:
            raise InvalidScope("scope is required")
        unknown = [s for s in scope if s not in SUPPORTED_SCOPES]
        if unknown:
            raise InvalidScope(f"unknown scope: {' '.join(unknown)}")
        challenge = params.get("code_challenge")
        if not challenge:
            raise InvalidRequest("code_challenge is required (PKCE S256, RFC 7636)")
        # RFC 7636 §4.3: a missing method means plain, which RFC 9700 §2.1.1 rules out.
        if params.get("code_challenge_method") != "S256":
            raise InvalidRequest("code_challenge_method must be S256")
        if not pkce.is_challenge(challenge):
            raise InvalidRequest("code_challenge is not a base64url SHA-256 digest")
        nonce = params.get("nonce") or None
        if "openid" in scope and nonce is None:
            # Stricter than OIDC Core §3.1.2.1 so that a client forgetting replay protection fails.
            raise InvalidRequest("nonce is required with the openid scope")
        return AuthorizationRequest(
            client_id=params["client_id"],
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            expires_at=self.settings.clock() + self.settings.consent_ttl,
        )

    def _auto_user(self, login_hint: str | None) -> str:
        for account in self.accounts.values():
            if login_hint in (account.user_id, account.email):
                return account.user_id
        return self.settings.auto_approve_user or DEMO_USER_ID

    async def decide(self, request: Request) -> Response:
        """The consent form's answer: Approve issues a code, Deny sends access_denied."""
        try:
            form = await read_form(request)
        except InvalidRequest as exc:
            return error_page(exc.description)
        held = self.grants.take_request(form.get("request_id", ""))
        if held is None:
            return error_page("This sign-in request expired or was already answered.")
        if form.get("decision") != "approve":
            self.stats.count("authorize.denied")
            denied = AccessDenied("the user denied the request")
            return self._redirect(held.redirect_uri, {**denied.as_json(), "state": held.state})
        user_id = form.get("user_id", "")
        if user_id not in self.accounts:
            return error_page("Choose an account to sign in as.")
        return self._approve(held, user_id)

    def _approve(self, held: AuthorizationRequest, user_id: str) -> Response:
        self.stats.count("authorize.approved")
        code = self.grants.issue_code(held, user_id)
        return self._redirect(held.redirect_uri, {"code": code, "state": held.state})

    def _redirect(self, redirect_uri: str, params: Mapping[str, str | None]) -> Response:
        """RFC 6749 §4.1.2 redirect; RFC 9207 §2 adds ``iss`` to every response."""
        query = {name: value for name, value in params.items() if value is not None}
        match self.faults.take_authorize():
            case AuthorizeFault.WRONG_ISS:
                query["iss"] = "https://impostor.example"
            case AuthorizeFault.MISSING_ISS:
                pass
            case None:
                query["iss"] = self.settings.issuer
        parts = urlsplit(redirect_uri)
        # RFC 6749 §3.1.2: keep the registered URI's own query component.
        joined = "&".join(part for part in (parts.query, urlencode(query)) if part)
        return RedirectResponse(urlunsplit(parts._replace(query=joined)), status_code=302)

    # Token endpoint (RFC 6749 §3.2) ----------------------------------------

    async def token(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            grant_type = form.get("grant_type", "")
            known = grant_type in ("authorization_code", "refresh_token")
            self.stats.count(f"token.{grant_type if known else 'other'}")
            client_id = authenticate_client(
                request.headers.get("authorization"), form, self.settings.clients
            )
            if grant_type == "authorization_code":
                body = self._exchange_code(form, client_id)
            elif grant_type == "refresh_token":
                body = self._refresh(form, client_id)
            elif not grant_type:
                raise InvalidRequest("grant_type is required")
            else:
                raise UnsupportedGrantType(f"grant_type {grant_type} is not supported")
        except OAuthError as exc:
            return self._token_error(exc)
        return JSONResponse(body, headers=_NO_STORE)

    def _exchange_code(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with the PKCE check of RFC 7636 §4.6."""
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code:
            raise InvalidRequest("code is required")
        if not verifier:
            raise InvalidRequest("code_verifier is required")
        issued = self.grants.redeem_code(
            code, client_id=client_id, redirect_uri=form.get("redirect_uri", ""), verifier=verifier
        )
        body = self._token_body(issued)
        if "openid" in issued.access.grant.scope:
            body["id_token"] = self._id_token(issued)
        return body

    def _refresh(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        """RFC 6749 §6. OIDC Core §12.2 lets the answer leave out the ID token; it does."""
        value = form.get("refresh_token")
        if not value:
            raise InvalidRequest("refresh_token is required")
        if self.faults.take_refresh() is not None:
            self.grants.end_family_of(value)
            raise InvalidGrant("the grant was revoked (sandbox fault)")
        scope = tuple(form["scope"].split()) if form.get("scope") else None
        issued = self.grants.refresh(
            value, client_id=client_id, scope=scope, rotate=self.settings.rotate_refresh_tokens
        )
        return self._token_body(issued)

    def _token_body(self, issued: IssuedTokens) -> dict[str, Any]:
        """RFC 6749 §5.1 successful response."""
        return {
            "access_token": issued.access.value,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl,
            "refresh_token": issued.refresh.value,
            "scope": " ".join(issued.access.grant.scope),
        }

    def _id_token(self, issued: IssuedTokens) -> str:
        """OIDC Core §2 ID token, possibly broken by an armed fault."""
        grant = issued.access.grant
        now = int(self.settings.clock())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": grant.user_id,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + self.settings.id_token_ttl,
            "auth_time": grant.auth_time,
            "at_hash": at_hash(issued.access.value),
            **self._identity_claims(grant),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        return sign_id_token(self.keys, claims, self.faults.take_id_token())

    def _identity_claims(self, grant: Grant) -> dict[str, Any]:
        """OIDC Core §5.4: ``email`` and ``profile`` scopes release these claims."""
        account = self.accounts[grant.user_id]
        claims: dict[str, Any] = {}
        if "email" in grant.scope:
            claims.update(email=account.email, email_verified=True)
        if "profile" in grant.scope:
            claims["name"] = account.name
        return claims

    def _token_error(self, exc: OAuthError) -> Response:
        """RFC 6749 §5.2 error; invalid_client also carries a Basic challenge."""
        headers = dict(_NO_STORE)
        if isinstance(exc, InvalidClient):
            headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
        return JSONResponse(exc.as_json(), status_code=exc.status_code, headers=headers)

    # Revocation (RFC 7009) and userinfo (OIDC Core §5.3) -------------------

    async def revoke(self, request: Request) -> Response:
        self.stats.count("revoke.received")
        try:
            form = await read_form(request)
            client_id = authenticate_client(
                request.headers.get("authorization"), form, self.settings.clients
            )
            token = form.get("token")
            if not token:
                raise InvalidRequest("token is required")
        except OAuthError as exc:
            return self._token_error(exc)
        # RFC 7009 §2.2: unknown or already invalid tokens also get 200.
        self.grants.revoke(token, client_id=client_id)
        return Response(status_code=200, headers=_NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        self.stats.count("userinfo.received")
        value = bearer.bearer_token(request)
        if value is None:
            return bearer.missing_token()
        token = self.grants.access(value)
        if token is None:
            return bearer.invalid_token("the access token is unknown, expired or revoked")
        if "openid" not in token.grant.scope:
            return bearer.insufficient_scope("openid")
        claims = {"sub": token.grant.user_id, **self._identity_claims(token.grant)}
        return JSONResponse(claims, headers=_NO_STORE)
