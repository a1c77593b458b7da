"""Signing keys and ID tokens: RS256 JWTs with a ``kid`` the JWKS resolves (OIDC Core §2).

The key ring holds the current key and, after a rotation, the previous one, so
that tokens signed just before a rotation still verify against the JWKS
(OIDC Core §10.1.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from providers.sandbox.faults import IdTokenFault

ALGORITHM = "RS256"
RSA_KEY_SIZE = 2048


def generate_signing_key() -> RSAKey:
    kid = secrets.token_hex(8)
    return RSAKey.generate_key(
        RSA_KEY_SIZE, parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True
    )


class KeyRing:
    """The current signing key and at most one previous key; safe under concurrent requests."""

    def __init__(self, first: RSAKey | None = None) -> None:
        self._lock = threading.Lock()
        self._current = first if first is not None else generate_signing_key()
        if self._current.kid is None:
            raise ValueError("the signing key needs a kid")
        self._previous: RSAKey | None = None

    @property
    def current(self) -> RSAKey:
        with self._lock:
            return self._current

    def rotate(self) -> RSAKey:
        """Make a fresh key current; the old one stays published until the next rotation."""
        fresh = generate_signing_key()
        with self._lock:
            self._previous, self._current = self._current, fresh
        return fresh

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set (RFC 7517 §5), current key first."""
        with self._lock:
            keys = [self._current] if self._previous is None else [self._current, self._previous]
        return {"keys": [dict(key.as_dict(private=False)) for key in keys]}


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return _b64(digest[: len(digest) // 2])


def sign_id_token(
    keys: KeyRing, claims: Mapping[str, Any], fault: IdTokenFault | None = None
) -> str:
    """Sign ``claims`` as an ID token, broken the way ``fault`` says (for tests)."""
    claims = dict(claims)
    key = keys.current
    kid = str(key.kid)
    match fault:
        case IdTokenFault.WRONG_AUD:
            claims["aud"] = "someone-else"
        case IdTokenFault.WRONG_ISS:
            claims["iss"] = "https://impostor.example"
        case IdTokenFault.WRONG_NONCE:
            claims["nonce"] = secrets.token_urlsafe(16)
        case IdTokenFault.EXPIRED:
            claims["iat"] = int(claims["iat"]) - 7200
            claims["exp"] = int(claims["iat"]) + 3600
        case IdTokenFault.BAD_SIGNATURE:
            # Same kid, different key: only the signature check can catch it.
            impostor = RSAKey.generate_key(RSA_KEY_SIZE, parameters={"kid": kid})
            return jwt.encode({"alg": ALGORITHM, "kid": kid}, claims, impostor)
        case IdTokenFault.UNKNOWN_KID:
            stranger = generate_signing_key()
            return jwt.encode({"alg": ALGORITHM, "kid": stranger.kid}, claims, stranger)
        case IdTokenFault.ALG_NONE:
            # RFC 7519 §6.1 unsecured JWT, which a client must never accept for an ID token.
            header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{header}.{_b64(json.dumps(claims).encode())}."
        case None:
            pass
    return jwt.encode({"alg": ALGORITHM, "kid": kid}, claims, key)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
