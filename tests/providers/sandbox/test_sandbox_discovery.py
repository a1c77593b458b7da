"""Discovery metadata and the JWK Set of the sandbox."""

from __future__ import annotations

import httpx

from providers.sandbox.settings import SandboxSettings


async def test_discovery_names_every_endpoint_under_the_issuer(
    client: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    """The OIDC discovery document points every endpoint at the issuer's own URL."""
    meta = (await client.get("/.well-known/openid-configuration")).json()
    base = settings.issuer
    assert meta["issuer"] == base
    assert {
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/jwks",
        "revocation_endpoint": f"{base}/revoke",
    } == {key: meta[key] for key in (
        "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
        "revocation_endpoint",
    )}  # fmt: skip


async def test_discovery_advertises_pkce_s256_iss_parameter_and_client_auth(
    client: httpx.AsyncClient,
) -> None:
    """Discovery advertises S256 only, RFC 9207 iss, and both secret-based client auths."""
    meta = (await client.get("/.well-known/openid-configuration")).json()
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert "posts.read" in meta["scopes_supported"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_rfc8414_metadata_matches_openid_configuration(client: httpx.AsyncClient) -> None:
    """The RFC 8414 well-known path serves the same metadata."""
    oidc = (await client.get("/.well-known/openid-configuration")).json()
    oauth = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert oidc == oauth


async def test_jwks_publishes_one_public_rsa_key_with_kid(client: httpx.AsyncClient) -> None:
    """The JWKS holds the public half of the signing key, with kid, use and alg."""
    keys = (await client.get("/jwks")).json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")
    assert key["kid"]
    assert "d" not in key


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    """Paths the sandbox does not serve answer with a JSON 404."""
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
