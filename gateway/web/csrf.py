"""CSRF tokens for the portal's forms (OWASP ASVS 4.2.2).

A form's token is an HMAC of the connect session it belongs to, under a key
derived from ``LINKGATE_SECRET_KEY``: nothing is stored, a token from one
session is useless in another, and it cannot be computed without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

FIELD = "csrf_token"


def _key(secret_key: str) -> bytes:
    return hashlib.sha256(b"linkgate/csrf/v1|" + secret_key.encode()).digest()


def token_for(secret_key: str, session_id: str) -> str:
    return hmac.new(_key(secret_key), session_id.encode(), hashlib.sha256).hexdigest()


def is_valid(secret_key: str, session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(
        token_for(secret_key, session_id), str(presented)
    )
