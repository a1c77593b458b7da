"""Sign in with Apple: identity only (Apple offers no content API).

From Apple's Sign in with Apple REST API: "Generate and validate tokens"
(client secret as an ES256 JWT), "Revoke tokens" (``/auth/revoke``),
"Request an authorization to the Sign in with Apple server" (``response_mode=form_post``
is required when ``name`` or ``email`` is asked for; the ``user`` JSON with the
name arrives only on the first authorization) and "ErrorResponse".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from providers.base import (
    Account,
    ClientAuth,
    ClientSecretJWT,
    Endpoints,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    OAuthSettings,
    Provider,
    oidc_account,
)

APPLE_AUDIENCE = "https://appleid.apple.com"
MAX_NAME_LENGTH = 200


def account_from_callback(account: Account, params: Mapping[str, str]) -> Account:
    """Use the name Apple posts on first consent (``user`` form field) as the account name.

    The field is not signed, so it only ever names the account for people; the
    account's identity stays the ID token's ``sub``. Later sign-ins carry no
    ``user``, and the account keeps whatever name the ID token gives.
    """
    raw = params.get("user")
    if not raw:
        return account
    try:
        user = json.loads(raw)
    except ValueError:
        return account
    name = user.get("name") if isinstance(user, dict) else None
    if not isinstance(name, dict):
        return account
    parts = [name.get("firstName"), name.get("lastName")]
    full = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return replace(account, name=full[:MAX_NAME_LENGTH]) if full else account


ERRORS = ErrorTable(
    token=(
        # ErrorResponse: invalid_client is a bad client-secret JWT (team, key or sub):
        # the operator must fix the configuration; the customer's grant is fine.
        ErrorRule(
            kind=ErrorKind.PERMANENT,
            path=("error",),
            values=frozenset({"invalid_client", "unauthorized_client"}),
        ),
    ),
)

PROVIDER = Provider(
    name="apple",
    display_name="Apple",
    oauth=OAuthSettings(
        endpoints=Endpoints(
            issuer="https://appleid.apple.com",
            authorize_url="https://appleid.apple.com/auth/authorize",
            token_url="https://appleid.apple.com/auth/token",  # noqa: S106 - a URL, not a secret
            revoke_url="https://appleid.apple.com/auth/revoke",
            jwks_url="https://appleid.apple.com/auth/keys",
            api_base_url="https://appleid.apple.com",  # no API; nothing is fetched from it
        ),
        scopes=("name", "email"),
        client_auth=ClientAuth.SIGNED_SECRET_POST,
        client_secret_jwt=ClientSecretJWT(audience=APPLE_AUDIENCE, algorithm="ES256"),
        oidc=True,
        rotates_refresh_token=False,  # a refresh returns no new refresh token
        response_mode="form_post",
        id_token_algorithms=("RS256",),
    ),
    # No resource: Apple has no userinfo or content endpoint to read through.
    resources={},
    account_from_claims=oidc_account,
    account_from_callback=account_from_callback,
    scope_descriptions={
        "name": "see your name (sent once, when you first agree)",
        "email": "see your email address, or an Apple relay address",
    },
    errors=ERRORS,
)

__all__ = ["PROVIDER", "account_from_callback"]
