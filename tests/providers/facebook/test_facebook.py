"""Facebook Pages through the gateway: long-lived exchange, Page tokens, posts, comments,
conversations, 190, revocation. Page shapes are in the JSON fixtures beside this file."""

from __future__ import annotations

from typing import Any

import httpx

from tests.providers.conftest import ProviderGateway
from tests.providers.stand import fixture

BASE = "https://graph.fb.test/v26.0"
ENDPOINTS = {
    "authorize_url": "https://www.fb.test/v26.0/dialog/oauth",
    "token_url": f"{BASE}/oauth/access_token",
    "revoke_url": f"{BASE}/me/permissions",
    "userinfo_url": f"{BASE}/me?fields=id,name",
    "api_base_url": BASE,
}
PAGE = "1029384756"
SHORT = {"access_token": "fb-short", "token_type": "bearer", "expires_in": 5400}
LONG = {"access_token": "fb-long", "token_type": "bearer", "expires_in": 5183944}
ACCOUNTS = {
    "data": [{"access_token": "fb-page-token", "category": "Retail", "name": "Acme", "id": PAGE,
              "tasks": ["ANALYZE", "MODERATE"]}],
    "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}},
}  # fmt: skip
EXPIRED = {"error": {"message": "Error validating access token: Session has expired.",
                     "type": "OAuthException", "code": 190, "error_subcode": 463,
                     "fbtrace_id": "AbCdEf"}}  # fmt: skip


def _pages(name: str, number: int) -> httpx.Response:
    return httpx.Response(200, json=fixture("facebook", f"{name}_page{number}"))


async def _linked(provider_gateway: Any) -> tuple[ProviderGateway, str, Any]:
    gw: ProviderGateway = await provider_gateway("facebook", ENDPOINTS)
    token = gw.router.post(f"{BASE}/oauth/access_token").mock(
        return_value=httpx.Response(200, json=SHORT)
    )
    exchange = gw.router.get(f"{BASE}/oauth/access_token").mock(
        return_value=httpx.Response(200, json=LONG)
    )
    gw.router.get(f"{BASE}/me").mock(
        return_value=httpx.Response(200, json={"id": "10158", "name": "Ada Owner"})
    )
    gw.router.get(f"{BASE}/me/accounts").mock(return_value=httpx.Response(200, json=ACCOUNTS))
    connection = await gw.link()
    assert token.called
    return gw, connection["id"], exchange


async def test_connect_trades_for_a_long_lived_token_and_reads_pages(
    provider_gateway: Any,
) -> None:
    """The short-lived token is exchanged with fb_exchange_token; /me/accounts is read with it."""
    gw, _, exchange = await _linked(provider_gateway)
    params = exchange.calls.last.request.url.params
    accounts = gw.router.routes[-1]

    assert params["grant_type"] == "fb_exchange_token"
    assert params["fb_exchange_token"] == "fb-short"
    assert accounts.calls.last.request.headers["authorization"] == "Bearer fb-long"


async def test_page_posts_use_the_page_token_and_page_to_the_end(provider_gateway: Any) -> None:
    """Posts are read with the Page token via next links; drafts, friends-only, hidden dropped.

    A public post whose ``is_hidden`` was asked for and left out (_5) is unknown, not public.
    """
    gw, connection_id, _ = await _linked(provider_gateway)
    feed = gw.router.get(url__startswith=f"{BASE}/{PAGE}/feed").mock(
        side_effect=[_pages("feed", n) for n in (1, 2, 3)]
    )
    records, pages = await gw.all_records(connection_id, "page.posts", page_id=PAGE)

    assert pages == 3
    assert [r["id"] for r in records] == [f"{PAGE}_1"]
    assert feed.calls[0].request.headers["authorization"] == "Bearer fb-page-token"


async def test_an_unknown_page_is_refused(provider_gateway: Any) -> None:
    """A page_id the connection holds no Page token for is a 400, never another token."""
    gw, connection_id, _ = await _linked(provider_gateway)
    response = await gw.records(connection_id, "page.posts", page_id="999")

    assert response.status_code == 400


async def test_page_comments_keep_direct_ones_and_drop_hidden_and_private(
    provider_gateway: Any,
) -> None:
    """Comments page through an empty page; hidden, private and unflagged comments are dropped.

    A comment whose ``is_private`` was asked for and left out (1_905) is unknown, not direct.
    """
    gw, connection_id, _ = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{BASE}/{PAGE}_1/comments").mock(
        side_effect=[_pages("comments", n) for n in (1, 2, 3)]
    )
    records, pages = await gw.all_records(
        connection_id, "page.comments", page_id=PAGE, post_id=f"{PAGE}_1"
    )

    assert pages == 3
    assert [(r["id"], r["visibility"]) for r in records] == [
        ("1_900", "direct"),
        ("1_903", "direct"),
    ]
    assert records[0]["data"]["author_name"] == "Jane Roe"
    assert {r["customer_id"] for r in records} == {"acme"}
    assert route.calls[0].request.headers["authorization"] == "Bearer fb-page-token"
    assert route.calls[0].request.url.params["filter"] == "stream"


async def test_page_conversations_are_direct_and_name_the_end_user(
    provider_gateway: Any,
) -> None:
    """Messenger threads are direct; the Page itself is not among the participants released."""
    gw, connection_id, _ = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{BASE}/{PAGE}/conversations").mock(
        side_effect=[_pages("conversations", n) for n in (1, 2)]
    )
    records, pages = await gw.all_records(connection_id, "page.conversations", page_id=PAGE)

    assert pages == 2
    assert [(r["id"], r["visibility"]) for r in records] == [
        ("t_100001", "direct"),
        ("t_100002", "direct"),
    ]
    assert records[0]["data"]["participant_ids"] == ["5550001"]
    assert records[0]["data"]["messages"][0]["text"] == "Hi, is my order shipped?"
    assert route.calls[1].request.url.params["after"] == "enc_after"
    assert route.calls[0].request.headers["authorization"] == "Bearer fb-page-token"


async def test_oauth_exception_190_moves_the_connection_to_needs_reauth(
    provider_gateway: Any,
) -> None:
    """No refresh at Facebook: a 190 on an API call leaves re-consent, seen on the connection."""
    gw, connection_id, _ = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{BASE}/{PAGE}/feed").mock(
        return_value=httpx.Response(400, json=EXPIRED)
    )
    response = await gw.records(connection_id, "page.posts", page_id=PAGE)
    async with gw.api() as api:
        connection = (await api.get(f"/v1/connections/{connection_id}")).json()

    assert response.status_code == 409, response.text
    assert connection["status"] == "needs_reauth"
    assert "fb-long" not in response.text
    assert "fb-page-token" not in response.text


async def test_oauth_exception_190_is_not_a_success(provider_gateway: Any) -> None:
    """Graph's 400 OAuthException 190 never yields records."""
    gw, connection_id, _ = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{BASE}/{PAGE}/feed").mock(
        return_value=httpx.Response(400, json=EXPIRED)
    )
    response = await gw.records(connection_id, "page.posts", page_id=PAGE)

    assert response.status_code >= 400
    assert "records" not in response.json()


async def test_disconnect_deletes_the_permissions(provider_gateway: Any) -> None:
    """Disconnecting sends DELETE /me/permissions with the user token."""
    gw, connection_id, _ = await _linked(provider_gateway)
    revoke = gw.router.delete(f"{BASE}/me/permissions").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    async with gw.api() as api:
        response = await api.delete(f"/v1/connections/{connection_id}")

    assert response.status_code in (200, 204), response.text
    assert revoke.calls.last.request.headers["authorization"] == "Bearer fb-long"
