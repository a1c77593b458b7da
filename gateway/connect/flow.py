"""The authorization-code round trip, from the portal's Connect button to a connection.

``start`` records the round trip's secrets server-side (state hash, sealed PKCE
verifier, nonce, a hash of a browser-binding cookie) and returns the provider
URL. ``finish`` takes the callback's query, and accepts it only if every check
of RFC 9700 §4.7 / RFC 6749 §10.12 (state: known, single use, unexpired, same
browser), RFC 9207 (``iss``) and OIDC Core §3.1.3.7 (ID token) passes. The
state is consumed *before* the code is exchanged, so a replay loses even a race.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import Action, EventDraft, Outcome
from gateway.connect.idtoken import Expectations, IDTokenError, validate_id_token
from gateway.connect.jwks import JWKSCache
from gateway.connect.sessions import ConnectSession, ConnectSessionStore, digest
from gateway.connections import Connection, ConnectionStore
from gateway.errors import ConnectFlowError, LinkgateError, NotFound
from gateway.oauth import OAuthError, begin_authorization, exchange_code, fetch_json
from gateway.observability import current_trace_id
from gateway.provider_registry import ConfiguredProvider, ProviderRegistry
from gateway.provider_tokens import exchange_token, fetch_scoped_tokens
from gateway.storage import oauth_states, writer
from gateway.vault import KeyRing

log = structlog.get_logger(__name__)

BROWSER_COOKIE = "lg_flow"
_STATE_ROW = "linkgate/oauth_state/"

# Provider error codes (RFC 6749 §4.1.2.1) in words an admin understands.
_PROVIDER_ERRORS = {
    "access_denied": "You (or the provider) declined to grant access. Nothing was linked.",
    "invalid_scope": "The provider refused the permissions Linkgate asked for.",
    "server_error": "The provider had an internal error. Try again in a few minutes.",
    "temporarily_unavailable": "The provider is temporarily unavailable. Try again later.",
    "unauthorized_client": "This provider is not set up for Linkgate yet; tell your platform.",
}


@dataclass(frozen=True, slots=True)
class Started:
    redirect_url: str
    browser_binding: str  # cookie value; only its hash is stored


@dataclass(frozen=True, slots=True)
class Finished:
    connection: Connection
    created: bool
    session: ConnectSession


class ConnectFlow:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        vault: KeyRing,
        registry: ProviderRegistry,
        sessions: ConnectSessionStore,
        connections: ConnectionStore,
        http: httpx.AsyncClient,
        jwks: JWKSCache,
        redirect_uri: str,
        state_ttl: int,
    ):
        self._engine = engine
        self._vault = vault
        self._registry = registry
        self._sessions = sessions
        self._connections = connections
        self._http = http
        self._jwks = jwks
        self._redirect_uri = redirect_uri
        self._state_ttl = timedelta(seconds=state_ttl)

    def offered(self, session: ConnectSession) -> list[ConfiguredProvider]:
        """Providers this session may link: configured ones, narrowed by the session."""
        names = session.providers or tuple(self._registry)
        return [self._registry[name] for name in names if name in self._registry]

    async def start(self, token: str, provider_name: str, browser_binding: str | None) -> Started:
        session = await self._sessions.by_token(token)
        if provider_name not in {p.name for p in self.offered(session)}:
            raise NotFound(f"provider {provider_name!r} is not offered by this connect link")
        configured = self._registry[provider_name]
        request = begin_authorization(configured.provider, configured.client, self._redirect_uri)
        binding = browser_binding or secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        state_hash = digest(request.state)
        async with writer(self._engine).begin() as conn:
            await conn.execute(
                oauth_states.insert().values(
                    state_hash=state_hash,
                    session_id=session.id,
                    provider=provider_name,
                    code_verifier=self._vault.seal(
                        request.code_verifier, row=_STATE_ROW + state_hash
                    ),
                    nonce=request.nonce,
                    browser_binding=digest(binding),
                    created_at=now,
                    expires_at=now + self._state_ttl,
                )
            )
        log.info("connect.started", provider=provider_name, customer_id=session.customer_id)
        return Started(redirect_url=request.url, browser_binding=binding)

    async def finish(
        self, params: Mapping[str, str], browser_binding: str | None, *, form_post: bool = False
    ) -> Finished:
        """``form_post``: the parameters came as a POST form body (OAuth 2.0 Form Post §2)."""
        state = params.get("state", "")
        if not state:
            raise ConnectFlowError("The provider sent you back without a state; start again.")
        pending = await self._consume_state(state, browser_binding)
        session = await self._sessions.by_id(pending["session_id"])
        configured = self._registry.require(pending["provider"])
        provider = configured.provider
        if form_post != (provider.oauth.response_mode == "form_post"):
            # The answer must come back the way it was asked for: a query-mode code
            # arriving in a POST (or the reverse) did not come from this round trip.
            raise ConnectFlowError("The provider answered in an unexpected way; start again.")
        self._check_issuer_parameter(configured, params.get("iss"))
        if "error" in params:
            message = _PROVIDER_ERRORS.get(
                params["error"], "The provider reported an error. Nothing was linked."
            )
            log.info("connect.refused", provider=provider.name, error=params["error"][:64])
            raise ConnectFlowError(message, provider_error=params["error"][:64])
        code = params.get("code")
        if not code:
            raise ConnectFlowError("The provider sent you back without an authorization code.")
        verifier = self._vault.open(
            pending["code_verifier"], row=_STATE_ROW + pending["state_hash"]
        )
        try:
            tokens = await exchange_code(
                self._http,
                provider,
                configured.client,
                code=code,
                code_verifier=verifier,
                redirect_uri=self._redirect_uri,
            )
            if provider.oauth.long_lived_exchange is not None:
                # Meta: the code yields a short-lived token; trade it for a long-lived
                # one before anything is stored (providers.base, long_lived_exchange).
                long_lived = await exchange_token(
                    self._http,
                    provider,
                    configured.client,
                    tokens.access_token,
                    provider.oauth.long_lived_exchange,
                )
                # The trade answers without the grant's scopes; the code exchange named them.
                tokens = replace(long_lived, scope=long_lived.scope or tokens.scope)
        except OAuthError as exc:
            log.info("connect.exchange_failed", provider=provider.name, error=exc.error)
            raise ConnectFlowError(
                "The provider did not accept the sign-in (" + exc.error + "). Start again."
            ) from None
        except LinkgateError as exc:
            raise ConnectFlowError(f"The provider could not be reached: {exc.detail}") from None
        claims = await self._identity(configured, tokens.id_token, tokens.access_token, pending)
        account = provider.account_from_claims(claims, configured.issuer)
        if provider.account_from_callback is not None:
            account = provider.account_from_callback(account, params)
        kept: dict[str, Any] | None = None
        if provider.kept_claims is not None:  # no userinfo endpoint (Apple): keep the claims
            earlier = await self._connections.claims.find(
                customer_id=session.customer_id, provider=provider.name, account=account
            )
            kept = provider.kept_claims.merge(claims, params, earlier)
            if isinstance(kept.get("name"), str) and kept["name"]:
                account = replace(account, name=kept["name"])  # a sticky first-consent name
        scopes = tokens.scope or provider.oauth.scopes
        scoped: dict[str, str] = {}
        if provider.scoped_tokens is not None:  # Meta Page tokens, listed under the user's token
            try:
                scoped = await fetch_scoped_tokens(
                    self._http, provider, provider.scoped_tokens, tokens.access_token
                )
            except LinkgateError as exc:
                raise ConnectFlowError(
                    f"The account's pages could not be read: {exc.detail}"
                ) from None
        trace_id = current_trace_id()
        connection, created = await self._connections.link(
            customer_id=session.customer_id,
            provider=provider.name,
            account=account,
            tokens=tokens,
            scopes=scopes,
            # Committed with the link, appended before this returns (or drained later).
            audit_as=lambda linked: EventDraft(
                customer_id=session.customer_id,
                action=Action.CONNECTION_CREATED,
                outcome=Outcome.ALLOWED,
                caller_id=session.created_by,
                connection_id=linked.id,
                provider=provider.name,
                trace_id=trace_id,
            ),
        )
        if provider.scoped_tokens is not None:
            await self._connections.scoped.replace(connection.id, scoped)
        if kept is not None:
            await self._connections.claims.keep(connection.id, kept)
        log.info(
            "connection.linked",
            connection_id=connection.id,
            provider=provider.name,
            customer_id=session.customer_id,
            created=created,
        )
        return Finished(connection=connection, created=created, session=session)

    async def _consume_state(self, state: str, browser_binding: str | None) -> dict[str, Any]:
        state_hash = digest(state)
        now = datetime.now(UTC)
        async with writer(self._engine).begin() as conn:
            row = (
                (
                    await conn.execute(
                        select(oauth_states).where(oauth_states.c.state_hash == state_hash)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise ConnectFlowError("This sign-in link is unknown. Start again from the portal.")
            if row["used_at"] is not None:
                raise ConnectFlowError(
                    "This sign-in was already used. Start again from the portal."
                )
            if row["expires_at"] <= now:
                raise ConnectFlowError("This sign-in took too long and expired. Start again.")
            expected = row["browser_binding"]
            if not browser_binding or not hmac.compare_digest(digest(browser_binding), expected):
                # RFC 9700 §4.7.1: state must be bound to the user agent that started the flow.
                raise ConnectFlowError(
                    "This sign-in was started in another browser or session. Start again here."
                )
            consumed = await conn.execute(
                update(oauth_states)
                .where(oauth_states.c.state_hash == state_hash, oauth_states.c.used_at.is_(None))
                .values(used_at=now)
            )
            if consumed.rowcount != 1:
                raise ConnectFlowError(
                    "This sign-in was already used. Start again from the portal."
                )
        return dict(row)

    def _check_issuer_parameter(self, configured: ConfiguredProvider, iss: str | None) -> None:
        # RFC 9207 §2.4: compare iss when sent; require it when the provider advertises it.
        expected = configured.provider.oauth.endpoints.issuer
        if iss is not None and iss != expected:
            raise ConnectFlowError(
                "The answer came from a different issuer than the one asked (mix-up defence)."
            )
        if iss is None and configured.provider.oauth.supports_iss_parameter:
            raise ConnectFlowError("The provider's answer lacks the issuer it promises to send.")

    async def _identity(
        self,
        configured: ConfiguredProvider,
        id_token: str | None,
        access_token: str,
        pending: Mapping[str, Any],
    ) -> dict[str, Any]:
        provider = configured.provider
        endpoints = provider.oauth.endpoints
        if provider.oauth.oidc:
            if not id_token or not endpoints.jwks_url or not endpoints.issuer:
                raise ConnectFlowError("The provider did not return an ID token.")
            expect = Expectations(
                issuer=endpoints.issuer,
                client_id=configured.client.client_id,
                nonce=pending["nonce"] or "",
                algorithms=provider.oauth.id_token_algorithms,
                now=int(time.time()),
                issuer_for=provider.oauth.issuer_for if provider.oauth.issuer_claims else None,
            )
            try:
                keys = await self._jwks.get(endpoints.jwks_url)
                try:
                    return validate_id_token(id_token, keys, expect)
                except IDTokenError as exc:
                    if not exc.unknown_key:
                        raise
                    keys = await self._jwks.get(endpoints.jwks_url, refresh=True)
                    return validate_id_token(id_token, keys, expect)
            except IDTokenError as exc:
                log.warning("connect.id_token_rejected", provider=provider.name, reason=exc.reason)
                raise ConnectFlowError(
                    f"The provider's ID token was rejected: {exc.reason}."
                ) from None
            except LinkgateError as exc:
                raise ConnectFlowError(
                    f"The provider's keys could not be fetched: {exc.detail}"
                ) from None
        if not endpoints.userinfo_url:
            raise ConnectFlowError("The provider offers no way to identify the account.")
        try:
            return await fetch_json(self._http, endpoints.userinfo_url, bearer=access_token)
        except LinkgateError as exc:
            raise ConnectFlowError(f"The account could not be identified: {exc.detail}") from None
