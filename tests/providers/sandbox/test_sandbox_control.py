"""The /_sandbox/ control surface: each fault switch, stats, key rotation and expiry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from providers.sandbox.settings import DEFAULT_CLIENT_ID, SandboxSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Clock, Flow


async def arm(client: httpx.AsyncClient, **faults: Any) -> httpx.Response:
    response = await client.post("/_sandbox/faults", json=faults)
    assert response.status_code == 200, response.text
    return response


async def id_token_claims(flow: Flow, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await flow.client.get("/jwks")).json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256"]).claims)


@pytest.mark.parametrize(
    ("fault", "claim", "expected"),
    [
        ("wrong_aud", "aud", "someone-else"),
        ("wrong_iss", "iss", "https://impostor.example"),
    ],
)
async def test_id_token_fault_breaks_one_claim(
    flow: Flow, fault: str, claim: str, expected: str
) -> None:
    """wrong_aud and wrong_iss change only that claim of the next ID token."""
    await arm(flow.client, id_token=fault)
    claims = await id_token_claims(flow, (await flow.tokens())["id_token"])
    assert claims[claim] == expected


async def test_wrong_nonce_fault(flow: Flow) -> None:
    """wrong_nonce puts a nonce in the ID token that the client never sent."""
    await arm(flow.client, id_token="wrong_nonce")
    auth = await flow.authorize()
    body = (await flow.exchange(auth)).json()
    assert (await id_token_claims(flow, body["id_token"]))["nonce"] != auth.nonce


async def test_expired_fault(flow: Flow, clock: Clock) -> None:
    """expired issues an ID token whose exp is already past."""
    await arm(flow.client, id_token="expired")
    claims = await id_token_claims(flow, (await flow.tokens())["id_token"])
    assert claims["exp"] < clock.now


async def test_bad_signature_fault(flow: Flow) -> None:
    """bad_signature signs with a key that is not in the JWKS but claims its kid."""
    await arm(flow.client, id_token="bad_signature")
    with pytest.raises(BadSignatureError):
        await id_token_claims(flow, (await flow.tokens())["id_token"])


async def test_alg_none_and_unknown_kid_faults(flow: Flow) -> None:
    """alg_none sends an unsigned token; unknown_kid a kid the JWKS lacks."""
    await arm(flow.client, id_token="alg_none")
    unsigned = (await flow.tokens())["id_token"]
    assert unsigned.endswith(".")
    await arm(flow.client, id_token="unknown_kid")
    stranger = (await flow.tokens())["id_token"]
    kids = {key["kid"] for key in (await flow.client.get("/jwks")).json()["keys"]}
    assert jws.extract_compact(stranger.encode()).headers()["kid"] not in kids


async def test_id_token_fault_fires_once(flow: Flow, settings: SandboxSettings) -> None:
    """A fault breaks only the next ID token; the one after is good again."""
    await arm(flow.client, id_token="wrong_aud")
    await flow.tokens()
    claims = await id_token_claims(flow, (await flow.tokens())["id_token"])
    assert claims["aud"] == DEFAULT_CLIENT_ID


@pytest.mark.parametrize(("fault", "iss"), [("wrong_iss", "https://impostor.example"),
                                            ("missing_iss", None)])  # fmt: skip
async def test_authorize_iss_faults(flow: Flow, fault: str, iss: str | None) -> None:
    """authorize faults send a wrong RFC 9207 iss parameter, or none."""
    await arm(flow.client, authorize=fault)
    auth = await flow.authorize()
    assert auth.query.get("iss") == iss


async def test_refresh_fault_answers_invalid_grant_and_revokes(flow: Flow) -> None:
    """The refresh fault answers invalid_grant and the grant stays dead, like a revoked one."""
    tokens = await flow.tokens()
    await arm(flow.client, refresh="invalid_grant")
    first = await flow.refresh(tokens["refresh_token"])
    assert first.status_code == 400
    assert first.json()["error"] == "invalid_grant"
    assert (await flow.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_rate_limited_fault_answers_429_once_with_retry_after(flow: Flow) -> None:
    """The rate_limited fault answers 429 with Retry-After once, then the API works."""
    token = (await flow.tokens())["access_token"]
    await arm(flow.client, api="rate_limited", retry_after=7)
    limited = await flow.api("/api/posts", token)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert (await flow.api("/api/posts", token)).status_code == 200


async def test_unavailable_fault_answers_503_for_the_given_times(flow: Flow) -> None:
    """The unavailable fault answers 503 for as many requests as armed."""
    token = (await flow.tokens())["access_token"]
    await arm(flow.client, api="unavailable", times=2)
    statuses = [(await flow.api("/api/events", token)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


@pytest.mark.parametrize("body", [{"id_token": "sparkly"}, {"api": "rate_limited", "times": 0},
                                  {"refresh": "invalid_grant", "extra": 1}, [1, 2]])  # fmt: skip
async def test_bad_fault_requests_are_400(flow: Flow, body: object) -> None:
    """Unknown fault names, keys or counts are refused and arm nothing."""
    response = await flow.client.post("/_sandbox/faults", json=body)
    assert response.status_code == 400
    assert (await flow.client.get("/_sandbox/faults")).json()["api"] is None


async def test_faults_can_be_disarmed(flow: Flow) -> None:
    """DELETE /_sandbox/faults disarms everything."""
    await arm(flow.client, id_token="wrong_aud", api="unavailable")
    await flow.client.delete("/_sandbox/faults")
    assert (await flow.client.get("/_sandbox/faults")).json()["id_token"] is None
    claims = await id_token_claims(flow, (await flow.tokens())["id_token"])
    assert claims["aud"] == DEFAULT_CLIENT_ID


async def test_stats_count_token_requests_by_grant_type(flow: Flow) -> None:
    """GET /_sandbox/stats counts token requests by grant type."""
    tokens = await flow.tokens()
    await flow.refresh(tokens["refresh_token"])
    await flow.refresh(tokens["refresh_token"])
    stats = (await flow.client.get("/_sandbox/stats")).json()
    assert stats["token_requests"] == {"authorization_code": 1, "refresh_token": 2}


async def test_key_rotation_keeps_the_previous_key_published(flow: Flow) -> None:
    """After a rotation the JWKS holds the new and the previous key; new tokens use the new one."""
    before = (await flow.tokens())["id_token"]
    rotated = (await flow.client.post("/_sandbox/keys/rotate")).json()
    after = (await flow.tokens())["id_token"]
    assert len(rotated["kids"]) == 2
    assert jws.extract_compact(after.encode()).headers()["kid"] == rotated["current"]
    await id_token_claims(flow, before)
    await id_token_claims(flow, after)


async def test_expire_tokens_makes_access_tokens_401(flow: Flow) -> None:
    """POST /_sandbox/tokens/expire expires every access token at once."""
    token = (await flow.tokens())["access_token"]
    assert (await flow.client.post("/_sandbox/tokens/expire")).json() == {"expired": 1}
    assert (await flow.api("/api/me", token)).status_code == 401


async def test_reset_forgets_grants_and_counts(flow: Flow) -> None:
    """POST /_sandbox/reset forgets tokens and statistics."""
    token = (await flow.tokens())["access_token"]
    await flow.client.post("/_sandbox/reset")
    assert (await flow.api("/api/me", token)).status_code == 401
    assert (await flow.client.get("/_sandbox/stats")).json().get("token_requests") is None


async def test_control_surface_can_be_turned_off(flow_for: Callable[..., Flow]) -> None:
    """With control_enabled off, /_sandbox/ does not exist."""
    flow = flow_for(control_enabled=False)
    assert (await flow.client.get("/_sandbox/stats")).status_code == 404
