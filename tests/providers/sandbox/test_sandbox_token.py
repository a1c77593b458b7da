"""The token endpoint: code exchange with PKCE, ID tokens, refresh rotation and revocation."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from providers.sandbox.settings import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxSettings

if TYPE_CHECKING:
    from conftest import Clock, Flow


async def decode_id_token(client: httpx.AsyncClient, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await client.get("/jwks")).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    return dict(token.claims) | {"_kid": token.header["kid"]}


async def test_code_exchange_returns_bearer_tokens(flow: Flow) -> None:
    """A valid code and verifier yield access, refresh and ID tokens with expiry and scope."""
    response = await flow.exchange(await flow.authorize())
    body = response.json()
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid email profile posts.read messages.read calendar.read"
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["id_token"]


async def test_id_token_is_signed_with_the_published_key_and_carries_the_claims(
    flow: Flow, client: httpx.AsyncClient, settings: SandboxSettings, clock: Clock
) -> None:
    """The ID token verifies against the JWKS and carries iss, sub, aud, exp, iat, nonce, email."""
    auth = await flow.authorize()
    body = (await flow.exchange(auth)).json()
    claims = await decode_id_token(client, body["id_token"])
    jwks_kid = (await client.get("/jwks")).json()["keys"][0]["kid"]
    assert claims["_kid"] == jwks_kid
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == DEFAULT_CLIENT_ID
    assert claims["sub"] == "usr_ada"
    assert claims["nonce"] == auth.nonce
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600
    assert (claims["email"], claims["name"]) == ("ada@northwind.example", "Ada Baker")
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_no_id_token_without_openid_scope(flow: Flow) -> None:
    """A plain OAuth request (no openid scope) gets no ID token and needs no nonce."""
    tokens = await flow.tokens(scope="posts.read", nonce=None)
    assert "id_token" not in tokens
    assert tokens["scope"] == "posts.read"


async def test_wrong_verifier_is_invalid_grant(flow: Flow) -> None:
    """RFC 7636 §4.6: a verifier that does not hash to the challenge is invalid_grant."""
    auth = await flow.authorize()
    response = await flow.exchange(auth, code_verifier="x" * 43)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_missing_verifier_is_invalid_request(flow: Flow) -> None:
    """A code exchange without code_verifier is an invalid request."""
    auth = await flow.authorize()
    response = await flow.exchange(auth, code_verifier="")
    assert response.json()["error"] == "invalid_request"


async def test_code_is_single_use_and_reuse_revokes_its_tokens(flow: Flow) -> None:
    """RFC 6749 §4.1.2: a second use fails and kills the tokens the first use produced."""
    auth = await flow.authorize()
    first = (await flow.exchange(auth)).json()
    second = await flow.exchange(auth)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert (await flow.api("/api/me", first["access_token"])).status_code == 401
    assert (await flow.refresh(first["refresh_token"])).json()["error"] == "invalid_grant"


async def test_code_expires_after_sixty_seconds(flow: Flow, clock: Clock) -> None:
    """Codes live 60 seconds."""
    auth = await flow.authorize()
    clock.advance(61)
    response = await flow.exchange(auth)
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "authorization code expired"}  # fmt: skip


async def test_code_is_bound_to_its_redirect_uri(flow: Flow) -> None:
    """The token request must repeat the redirect_uri of the authorization request."""
    auth = await flow.authorize()
    response = await flow.exchange(auth, redirect_uri="http://127.0.0.1:8080/other")
    assert response.json()["error"] == "invalid_grant"


async def test_code_is_bound_to_its_client(flow: Flow, settings: SandboxSettings) -> None:
    """Another registered client cannot redeem someone else's code."""
    auth = await flow.authorize()
    assert "other" not in settings.clients
    response = await flow.client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": auth.code,
              "redirect_uri": "http://127.0.0.1:8080/oauth/callback",
              "code_verifier": auth.verifier},
        headers={"Authorization": flow.basic_auth("other", "secret")},
    )  # fmt: skip
    assert response.status_code == 401


async def test_client_secret_post_is_accepted(flow: Flow) -> None:
    """Client credentials in the body (client_secret_post) work like Basic."""
    auth = await flow.authorize()
    response = await flow.client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": auth.code,
              "redirect_uri": "http://127.0.0.1:8080/oauth/callback",
              "code_verifier": auth.verifier, "client_id": DEFAULT_CLIENT_ID,
              "client_secret": DEFAULT_CLIENT_SECRET},
    )  # fmt: skip
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic bGlua2dhdGUtZGVtbzp3cm9uZw=="},  # linkgate-demo:wrong
        {"Authorization": "Basic !!!"},
    ],
)
async def test_bad_client_authentication_is_invalid_client_401(
    flow: Flow, headers: dict[str, str]
) -> None:
    """RFC 6749 §5.2: failed client authentication is 401 invalid_client with a challenge."""
    auth = await flow.authorize()
    response = await flow.client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": auth.code,
              "code_verifier": auth.verifier},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_unsupported_grant_type(flow: Flow) -> None:
    """Grant types other than authorization_code and refresh_token are refused."""
    response = await flow.client.post(
        "/token", data={"grant_type": "password"}, headers={"Authorization": flow.basic_auth()}
    )
    assert response.json()["error"] == "unsupported_grant_type"


async def test_token_request_must_be_form_encoded(flow: Flow) -> None:
    """RFC 6749 §4.1.3: a JSON token request is an invalid request."""
    response = await flow.client.post(
        "/token", json={"grant_type": "refresh_token"}, headers={"Authorization": flow.basic_auth()}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_refresh_rotates_and_old_token_reuse_is_invalid_grant(flow: Flow) -> None:
    """Each refresh returns a new refresh token; the old one is then invalid_grant."""
    first = await flow.tokens()
    refreshed = await flow.refresh(first["refresh_token"])
    body = refreshed.json()
    assert refreshed.status_code == 200
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert "id_token" not in body
    reuse = await flow.refresh(first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"


async def test_refresh_token_reuse_ends_the_whole_family(flow: Flow) -> None:
    """RFC 9700 §4.14.2: after a reuse even the newest refresh and access tokens are dead."""
    first = await flow.tokens()
    second = (await flow.refresh(first["refresh_token"])).json()
    await flow.refresh(first["refresh_token"])
    assert (await flow.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await flow.api("/api/me", second["access_token"])).status_code == 401


async def test_refresh_without_rotation_keeps_the_refresh_token(
    flow_for: Callable[..., Flow],
) -> None:
    """With rotation off, refreshing hands back the same refresh token."""
    flow = flow_for(rotate_refresh_tokens=False)
    first = await flow.tokens()
    again = (await flow.refresh(first["refresh_token"])).json()
    twice = await flow.refresh(first["refresh_token"])
    assert again["refresh_token"] == first["refresh_token"]
    assert twice.status_code == 200


async def test_refresh_may_narrow_but_not_widen_scope(flow: Flow) -> None:
    """RFC 6749 §6: a refresh can ask for fewer scopes, never more."""
    first = await flow.tokens(scope="openid posts.read")
    wider = await flow.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
              "scope": "openid posts.read calendar.read"},
        headers={"Authorization": flow.basic_auth()},
    )  # fmt: skip
    assert wider.json()["error"] == "invalid_grant"


async def test_revoking_a_refresh_token_kills_its_family(flow: Flow) -> None:
    """RFC 7009: revoking the refresh token also ends its access token."""
    tokens = await flow.tokens()
    response = await flow.client.post(
        "/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        headers={"Authorization": flow.basic_auth()},
    )
    assert response.status_code == 200
    assert (await flow.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await flow.api("/api/me", tokens["access_token"])).status_code == 401


async def test_revoking_an_access_token_leaves_the_refresh_token(flow: Flow) -> None:
    """Revoking only the access token keeps the grant refreshable."""
    tokens = await flow.tokens()
    await flow.client.post(
        "/revoke",
        data={"token": tokens["access_token"]},
        headers={"Authorization": flow.basic_auth()},
    )
    assert (await flow.api("/api/me", tokens["access_token"])).status_code == 401
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200


async def test_revoking_an_unknown_token_is_200(flow: Flow) -> None:
    """RFC 7009 §2.2: an unknown token is answered with 200 all the same."""
    response = await flow.client.post(
        "/revoke", data={"token": "never-issued"}, headers={"Authorization": flow.basic_auth()}
    )
    assert response.status_code == 200


async def test_revocation_needs_client_authentication(flow: Flow) -> None:
    """RFC 7009 §2.1: the revocation endpoint authenticates the client."""
    response = await flow.client.post("/revoke", data={"token": "anything"})
    assert response.status_code == 401
