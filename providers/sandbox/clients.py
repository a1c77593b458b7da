"""Client authentication at the token and revocation endpoints (RFC 6749 §2.3.1)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import unquote_plus

from providers.sandbox.errors import InvalidClient, InvalidRequest
from providers.sandbox.settings import ClientRegistration


def authenticate_client(
    authorization: str | None,
    form: Mapping[str, str],
    clients: Mapping[str, ClientRegistration],
) -> str:
    """The authenticated client id, from HTTP Basic or from the body; never both (§2.3)."""
    basic = _basic_credentials(authorization)
    in_body = "client_secret" in form
    if basic is not None and in_body:
        raise InvalidRequest("use one client authentication method, not two")
    if basic is not None:
        client_id, secret = basic
        if form.get("client_id", client_id) != client_id:
            raise InvalidClient("client_id in the body differs from the authenticated client")
    elif in_body:
        client_id, secret = form.get("client_id", ""), form["client_secret"]
    else:
        raise InvalidClient("client authentication required")
    registration = clients.get(client_id)
    # Compare even for an unknown client so both failures take the same time.
    expected = registration.client_secret if registration is not None else ""
    if not hmac.compare_digest(secret.encode(), expected.encode()) or registration is None:
        raise InvalidClient("unknown client or wrong secret")
    return client_id


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("malformed Basic credentials")
    # RFC 6749 §2.3.1: both halves are form-urlencoded before being joined.
    return unquote_plus(client_id), unquote_plus(secret)
