"""What the server has granted: pending consents, codes, access and refresh tokens.

All state lives in memory behind one lock (it is a sandbox). Every token issued
from one authorization code belongs to one *family*; revoking a refresh token,
replaying a used code or reusing a rotated refresh token ends the whole family
(RFC 6749 §4.1.2, RFC 7009 §2.1, RFC 9700 §4.14.2).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from providers.sandbox import pkce
from providers.sandbox.errors import InvalidGrant


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRequest:
    """A validated /authorize request waiting for the user's decision."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    nonce: str | None
    code_challenge: str
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationCode:
    request: AuthorizationRequest
    user_id: str
    family: str
    auth_time: int
    expires_at: float
    used: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """What a token stands for: a user's consent to a client for some scopes."""

    client_id: str
    user_id: str
    scope: tuple[str, ...]
    family: str
    nonce: str | None = None
    auth_time: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessToken:
    value: str
    grant: Grant
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken:
    value: str
    grant: Grant
    active: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedTokens:
    access: AccessToken
    refresh: RefreshToken


class GrantStore:
    """The in-memory grant state of one sandbox server."""

    def __init__(self, *, clock: Callable[[], float], code_ttl: int, access_token_ttl: int) -> None:
        self._clock = clock
        self._code_ttl = code_ttl
        self._access_token_ttl = access_token_ttl
        self._lock = threading.Lock()
        self._requests: dict[str, AuthorizationRequest] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._dead_families: set[str] = set()

    def clear(self) -> None:
        with self._lock:
            for table in (self._requests, self._codes, self._access, self._refresh):
                table.clear()
            self._dead_families.clear()

    # Consent ---------------------------------------------------------------

    def hold_request(self, request: AuthorizationRequest) -> str:
        """Keep ``request`` until the user answers the consent page; returns its id."""
        request_id = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            # Forget consent pages nobody answered, so an idle sandbox does not grow.
            for stale in [k for k, r in self._requests.items() if r.expires_at <= now]:
                del self._requests[stale]
            self._requests[request_id] = request
        return request_id

    def take_request(self, request_id: str) -> AuthorizationRequest | None:
        """The held request, once: a consent form cannot be submitted twice."""
        with self._lock:
            request = self._requests.pop(request_id, None)
        if request is None or request.expires_at <= self._clock():
            return None
        return request

    # Codes -----------------------------------------------------------------

    def issue_code(self, request: AuthorizationRequest, user_id: str) -> str:
        now = self._clock()
        code = secrets.token_urlsafe(32)
        issued = AuthorizationCode(
            request=request,
            user_id=user_id,
            family=secrets.token_hex(8),
            auth_time=int(now),
            expires_at=now + self._code_ttl,
        )
        with self._lock:
            self._codes[code] = issued
        return code

    def redeem_code(
        self, code: str, *, client_id: str, redirect_uri: str, verifier: str
    ) -> IssuedTokens:
        """Exchange a code for tokens, checking every binding of RFC 6749 §4.1.3 and PKCE."""
        with self._lock:
            issued = self._codes.get(code)
            if issued is None or issued.request.client_id != client_id:
                raise InvalidGrant("unknown authorization code")
            if issued.used:
                # RFC 6749 §4.1.2: a replayed code revokes what it already produced.
                self._kill_family(issued.family)
                raise InvalidGrant("authorization code already used")
            self._codes[code] = replace(issued, used=True)
            if issued.expires_at <= self._clock():
                raise InvalidGrant("authorization code expired")
            if issued.request.redirect_uri != redirect_uri:
                raise InvalidGrant("redirect_uri does not match the authorization request")
            if not pkce.verifies(verifier, issued.request.code_challenge):
                raise InvalidGrant("code_verifier does not match the code_challenge")
            grant = Grant(
                client_id=client_id,
                user_id=issued.user_id,
                scope=issued.request.scope,
                family=issued.family,
                nonce=issued.request.nonce,
                auth_time=issued.auth_time,
            )
            return self._issue(grant)

    # Tokens ----------------------------------------------------------------

    def refresh(
        self, value: str, *, client_id: str, scope: tuple[str, ...] | None, rotate: bool
    ) -> IssuedTokens:
        """RFC 6749 §6; with ``rotate`` the old refresh token dies and a reuse ends the family."""
        with self._lock:
            token = self._refresh.get(value)
            if token is None or token.grant.client_id != client_id:
                raise InvalidGrant("unknown refresh token")
            if token.grant.family in self._dead_families:
                raise InvalidGrant("refresh token revoked")
            if not token.active:
                # RFC 9700 §4.14.2: reuse of a rotated token means it leaked; end the family.
                self._kill_family(token.grant.family)
                raise InvalidGrant("refresh token already used")
            grant = token.grant
            if scope is not None:
                # RFC 6749 §6: a refresh may narrow the scope, never widen it.
                if not set(scope) <= set(grant.scope):
                    raise InvalidGrant("scope exceeds the original grant")
                grant = replace(grant, scope=scope)
            if rotate:
                self._refresh[value] = replace(token, active=False)
                return self._issue(grant)
            access = self._new_access(grant)
            return IssuedTokens(access=access, refresh=token)

    def end_family_of(self, value: str) -> None:
        """Revoke the grant behind a refresh token, as a user revoking access would."""
        with self._lock:
            token = self._refresh.get(value)
            if token is not None:
                self._kill_family(token.grant.family)

    def revoke(self, value: str, *, client_id: str) -> None:
        """RFC 7009 §2.1: a refresh token takes its family with it; unknown tokens are ignored."""
        with self._lock:
            refresh = self._refresh.get(value)
            if refresh is not None and refresh.grant.client_id == client_id:
                self._kill_family(refresh.grant.family)
                return
            access = self._access.get(value)
            if access is not None and access.grant.client_id == client_id:
                del self._access[value]

    def access(self, value: str) -> AccessToken | None:
        """The live access token ``value``, or None when unknown, expired or revoked."""
        with self._lock:
            token = self._access.get(value)
        if token is None or token.expires_at <= self._clock():
            return None
        return token

    def expire_access_tokens(self) -> int:
        """Make every access token expire now, for tests of refresh-on-expiry."""
        now = self._clock()
        with self._lock:
            for value, token in self._access.items():
                self._access[value] = replace(token, expires_at=now)
            return len(self._access)

    def _issue(self, grant: Grant) -> IssuedTokens:
        refresh = RefreshToken(value=secrets.token_urlsafe(32), grant=grant)
        self._refresh[refresh.value] = refresh
        return IssuedTokens(access=self._new_access(grant), refresh=refresh)

    def _new_access(self, grant: Grant) -> AccessToken:
        token = AccessToken(
            value=secrets.token_urlsafe(32),
            grant=grant,
            expires_at=self._clock() + self._access_token_ttl,
        )
        self._access[token.value] = token
        return token

    def _kill_family(self, family: str) -> None:
        self._dead_families.add(family)
        for value, token in list(self._refresh.items()):
            if token.grant.family == family:
                self._refresh[value] = replace(token, active=False)
        for value, access in list(self._access.items()):
            if access.grant.family == family:
                del self._access[value]
