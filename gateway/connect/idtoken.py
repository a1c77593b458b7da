"""ID token validation, OIDC Core 1.0 §3.1.3.7, as one pure function.

The signature is checked against the provider's JWKS with an explicit
algorithm allow-list (never ``none``, RFC 8725 §3.1); the claims are checked
one by one, each failure naming the claim so the admin's error page and the
log say what was wrong, without echoing the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

DEFAULT_LEEWAY_SECONDS = 60  # clock skew tolerated between us and the provider
MAX_ID_TOKEN_AGE_SECONDS = 600  # an ID token issued longer ago than this is stale


class IDTokenError(Exception):
    """The ID token must not be trusted; ``reason`` is safe to show and log."""

    def __init__(self, reason: str, *, unknown_key: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unknown_key = unknown_key


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectations:
    issuer: str
    client_id: str
    nonce: str
    algorithms: Collection[str]
    now: int  # seconds since the epoch
    leeway: int = DEFAULT_LEEWAY_SECONDS
    # Multi-tenant issuers (providers.base.OAuthSettings.issuer_for): the issuer these
    # claims must name, derived from the token's own tenant claim; None = ``issuer``.
    issuer_for: Callable[[Mapping[str, Any]], str | None] | None = None


def validate_id_token(token: str, jwks: Mapping[str, Any], expect: Expectations) -> dict[str, Any]:
    """Return the verified claims, or raise :class:`IDTokenError`."""
    if "none" in expect.algorithms:
        raise IDTokenError("the 'none' algorithm is never accepted")
    try:
        key_set = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError):
        raise IDTokenError("the provider's JWKS could not be read") from None
    try:
        decoded = jwt.decode(token, key_set, algorithms=list(expect.algorithms))
    except JoseError as exc:
        unknown_key = type(exc).__name__ in {"InvalidKeyIdError", "MissingKeyError"}
        raise IDTokenError(f"signature not valid ({exc.error})", unknown_key=unknown_key) from None
    except (ValueError, TypeError):
        raise IDTokenError("not a well-formed JWT") from None
    claims = dict(decoded.claims)
    _check_claims(claims, expect)
    return claims


def _check_claims(claims: dict[str, Any], expect: Expectations) -> None:
    # §3.1.3.7 (2): iss MUST exactly match the issuer of the provider. For a
    # multi-tenant issuer, the template filled with the token's own tenant id
    # (Microsoft identity platform, "Validate the issuer").
    issuer = expect.issuer_for(claims) if expect.issuer_for else expect.issuer
    if issuer is None or claims.get("iss") != issuer:
        raise IDTokenError("iss does not match the provider's issuer")
    # §3.1.3.7 (3): aud MUST contain our client_id; (4)-(5): azp when several audiences.
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or expect.client_id not in audiences:
        raise IDTokenError("aud does not contain this client")
    if len(audiences) > 1 and claims.get("azp") != expect.client_id:
        raise IDTokenError("azp does not name this client although aud has several entries")
    # §3.1.3.7 (9): the current time MUST be before exp.
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + expect.leeway < expect.now:
        raise IDTokenError("the ID token has expired")
    # §3.1.3.7 (10): iat may reject tokens issued too far from now.
    iat = claims.get("iat")
    if not isinstance(iat, int | float):
        raise IDTokenError("iat is missing")
    if iat - expect.leeway > expect.now or iat + MAX_ID_TOKEN_AGE_SECONDS < expect.now:
        raise IDTokenError("iat is too far from the current time")
    # §3.1.3.7 (11): nonce MUST equal the value sent in the authentication request.
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce, expect.nonce):
        raise IDTokenError("nonce does not match this sign-in")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IDTokenError("sub is missing")
