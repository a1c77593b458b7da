"""X through the gateway: PKCE + Basic connect, mentions and DMs, rotation, revocation, limits."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from tests.providers.conftest import CLIENT_ID, CLIENT_SECRET, ProviderGateway, form
from tests.providers.x import x_fixtures as fx

BASE = "https://x.test"
ENDPOINTS = {
    "authorize_url": f"{BASE}/i/oauth2/authorize",
    "token_url": f"{BASE}/2/oauth2/token",
    "revoke_url": f"{BASE}/2/oauth2/revoke",
    "userinfo_url": f"{BASE}/2/users/me",
    "api_base_url": f"{BASE}/2",
}
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


async def _linked(
    provider_gateway: Any, token: dict[str, Any] | None = None
) -> tuple[ProviderGateway, str]:
    gw: ProviderGateway = await provider_gateway("x", ENDPOINTS)
    gw.router.post(f"{BASE}/2/oauth2/token").mock(
        return_value=httpx.Response(200, json=token or fx.TOKEN)
    )
    gw.router.get(f"{BASE}/2/users/me").mock(return_value=httpx.Response(200, json=fx.ME))
    connection = await gw.link()
    return gw, connection["id"]


async def test_connect_uses_pkce_and_basic_client_auth(provider_gateway: Any) -> None:
    """The authorize request carries S256 PKCE and the read scopes; the code exchange uses Basic."""
    gw: ProviderGateway = await provider_gateway("x", ENDPOINTS)
    token = gw.router.post(f"{BASE}/2/oauth2/token").mock(
        return_value=httpx.Response(200, json=fx.TOKEN)
    )
    gw.router.get(f"{BASE}/2/users/me").mock(return_value=httpx.Response(200, json=fx.ME))
    async with httpx.AsyncClient(timeout=15) as browser:
        query = await gw.authorize(browser)
        await browser.get(
            f"{gw.url}/oauth/callback", params={"code": "c0de", "state": query["state"]}
        )
    async with gw.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]

    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == "tweet.read users.read dm.read offline.access"
    assert token.calls.last.request.headers["authorization"] == BASIC
    assert "code_verifier" in form(token.calls.last.request)
    assert connection["account"]["id"] == fx.ACCOUNT_ID
    assert connection["status"] == "active"


async def test_mentions_page_to_the_end_and_drop_protected_authors(provider_gateway: Any) -> None:
    """Mentions page through next_token, an empty page included; protected authors are dropped."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(f"{BASE}/2/users/{fx.ACCOUNT_ID}/mentions").mock(
        side_effect=[httpx.Response(200, json=page) for page in fx.PAGES["mentions"]]
    )
    records, pages = await gw.all_records(connection_id, "mentions")

    assert pages == 3
    assert [r["id"] for r in records] == ["1500000000000000001", "1500000000000000004"]
    assert (
        route.calls[1].request.url.params["pagination_token"] == fx.MENTIONS_1["meta"]["next_token"]
    )
    assert route.calls[0].request.url.params["expansions"] == "author_id"
    assert all(r["customer_id"] == "acme" for r in records)


async def test_a_mentions_limit_below_five_is_refused_before_x_is_called(
    provider_gateway: Any,
) -> None:
    """X's mention timeline takes max_results 5 to 100: a limit of 4 is a 400 naming that range."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(f"{BASE}/2/users/{fx.ACCOUNT_ID}/mentions").mock(
        return_value=httpx.Response(200, json=fx.PAGES["mentions"][0])
    )
    refused = await gw.records(connection_id, "mentions", limit="4")
    smallest = await gw.records(connection_id, "mentions", limit="5")

    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("invalid-parameter")
    assert "between 5 and 100" in refused.json()["detail"]
    assert smallest.status_code == 200, smallest.text
    assert route.call_count == 1
    assert route.calls.last.request.url.params["max_results"] == "5"


async def test_dm_events_are_direct_and_the_sender_is_a_subject(provider_gateway: Any) -> None:
    """DM events are released as direct; the End User sender is typed as an X user id."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(f"{BASE}/2/dm_events").mock(return_value=httpx.Response(200, json=fx.DM_EVENTS))
    body = (await gw.records(connection_id, "dm_events")).json()

    assert [r["visibility"] for r in body["records"]] == ["direct", "direct"]
    assert body["next_cursor"] is None


async def test_refresh_stores_the_rotated_refresh_token(provider_gateway: Any) -> None:
    """An expired token is refreshed with Basic auth; the next refresh sends the rotated token."""
    gw, connection_id = await _linked(provider_gateway, token={**fx.TOKEN, "expires_in": 1})
    token = gw.router.post(f"{BASE}/2/oauth2/token").mock(
        side_effect=[
            httpx.Response(200, json={**fx.REFRESHED, "expires_in": 1}),
            httpx.Response(
                200,
                json={**fx.REFRESHED, "access_token": "x-access-3", "refresh_token": "x-refresh-3"},
            ),
        ]
    )
    gw.router.get(f"{BASE}/2/dm_events").mock(return_value=httpx.Response(200, json=fx.DM_EVENTS))
    assert (await gw.records(connection_id, "dm_events")).status_code == 200
    assert (await gw.records(connection_id, "dm_events")).status_code == 200

    refreshes = [
        form(c.request) for c in token.calls if form(c.request)["grant_type"] == "refresh_token"
    ]
    sent = [f["refresh_token"] for f in refreshes]
    assert sent == ["x-refresh-1", "x-refresh-2"]
    assert token.calls.last.request.headers["authorization"] == BASIC


async def test_a_refused_refresh_token_needs_reauth(provider_gateway: Any) -> None:
    """X's invalid_request for a used refresh token moves the connection to needs_reauth."""
    gw, connection_id = await _linked(provider_gateway, token={**fx.TOKEN, "expires_in": 1})
    gw.router.post(f"{BASE}/2/oauth2/token").mock(
        return_value=httpx.Response(400, json=fx.REFRESH_REFUSED)
    )
    response = await gw.records(connection_id, "dm_events")
    async with gw.api() as api:
        connection = (await api.get(f"/v1/connections/{connection_id}")).json()

    assert response.status_code == 409, response.text
    assert connection["status"] == "needs_reauth"


async def test_usage_capped_429_is_not_retried(provider_gateway: Any) -> None:
    """The usage-capped problem type is answered at once as rate limited, with one call only."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(f"{BASE}/2/dm_events").mock(
        return_value=httpx.Response(429, json=fx.USAGE_CAPPED)
    )
    response = await gw.records(connection_id, "dm_events")

    assert response.status_code == 429
    assert route.call_count == 1


async def test_a_429_waits_for_x_rate_limit_reset(provider_gateway: Any) -> None:
    """A 429 whose reset outlasts the deadline is passed on, Retry-After from x-rate-limit-reset."""
    gw, connection_id = await _linked(provider_gateway)
    reset = str(int(time.time()) + 120)
    gw.router.get(f"{BASE}/2/dm_events").mock(
        return_value=httpx.Response(
            429, headers={"x-rate-limit-reset": reset}, json={"title": "Too Many Requests"}
        )
    )
    response = await gw.records(connection_id, "dm_events")

    assert response.status_code == 429
    assert 100 <= int(response.headers["retry-after"]) <= 121


async def test_disconnect_revokes_at_x(provider_gateway: Any) -> None:
    """Deleting the connection revokes the refresh token, then the access token, at X."""
    gw, connection_id = await _linked(provider_gateway)
    revoke = gw.router.post(f"{BASE}/2/oauth2/revoke").mock(
        return_value=httpx.Response(200, json={"revoked": True})
    )
    async with gw.api() as api:
        response = await api.delete(f"/v1/connections/{connection_id}")

    assert response.status_code in (200, 204), response.text
    assert [form(c.request)["token_type_hint"] for c in revoke.calls] == [
        "refresh_token",
        "access_token",
    ]
    assert revoke.calls[0].request.headers["authorization"] == BASIC
