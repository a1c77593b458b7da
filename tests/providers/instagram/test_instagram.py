"""Instagram (Business Login for Instagram) through the gateway, against respx stand-ins.

Shapes follow Meta's Instagram Platform reference: "Oauth Access Token" (code
exchange, form body), "Access Token" (``ig_exchange_token``), "Refresh Access
Token" (``ig_refresh_token``), IG Media, IG Comment, conversations with
``platform=instagram``, and the Graph API's error object and cursor paging.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from providers.instagram import PROVIDER, token_answer
from providers.meta import graph_account
from tests.providers.conftest import CLIENT_ID, CLIENT_SECRET, ProviderGateway, form
from tests.providers.stand import fixture

AUTH = "https://www.ig.test/oauth/authorize"
TOKEN = "https://api.ig.test/oauth/access_token"
GRAPH = "https://graph.ig.test/v26.0"
ENDPOINTS = {
    "authorize_url": AUTH,
    "token_url": TOKEN,
    "userinfo_url": f"{GRAPH}/me?fields=user_id,id,username,name",
    "api_base_url": GRAPH,
}
ACCOUNT = "17841405793187218"
MEDIA_ID = "17895695668004550"


def _json(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=fixture("instagram", name), headers=headers)


async def _linked(
    provider_gateway: Any, long_lived: dict[str, Any] | None = None
) -> tuple[ProviderGateway, str]:
    gw: ProviderGateway = await provider_gateway("instagram", ENDPOINTS)
    gw.router.post(TOKEN).mock(return_value=_json("token"))
    gw.router.get("https://graph.ig.test/access_token").mock(
        return_value=httpx.Response(200, json=long_lived or fixture("instagram", "long_lived"))
    )
    gw.router.get(f"{GRAPH}/me").mock(return_value=_json("me"))
    connection = await gw.link()
    return gw, connection["id"]


def test_the_account_is_user_id_and_keeps_the_app_scoped_id_as_its_alias() -> None:
    """/me names two ids; which one Meta's callbacks carry is undocumented, so the
    connection is keyed by ``user_id`` and matched by ``id`` too (providers/instagram.py)."""
    account = graph_account(fixture("instagram", "me"), "https://www.instagram.com")

    assert (account.subject, account.alias, account.name) == (
        ACCOUNT,
        str(fixture("instagram", "me")["id"]),
        "acmeshop",
    )
    assert "id" in PROVIDER.oauth.endpoints.userinfo_url.split("fields=")[1].split(",")


def test_a_facebook_me_has_one_id_and_no_alias() -> None:
    account = graph_account({"id": "10158", "name": "Ada"}, "https://www.facebook.com")

    assert (account.subject, account.alias) == ("10158", "")


async def _connection(gw: ProviderGateway, connection_id: str) -> dict[str, Any]:
    async with gw.api() as api:
        return dict((await api.get(f"/v1/connections/{connection_id}")).json())


async def test_connect_exchanges_the_code_then_trades_for_a_long_lived_token(
    provider_gateway: Any,
) -> None:
    """Code at api.instagram.com (form body, secret in it), then ig_exchange_token, then /me."""
    gw: ProviderGateway = await provider_gateway("instagram", ENDPOINTS)
    token = gw.router.post(TOKEN).mock(return_value=_json("token"))
    exchange = gw.router.get("https://graph.ig.test/access_token").mock(
        return_value=_json("long_lived")
    )
    me = gw.router.get(f"{GRAPH}/me").mock(return_value=_json("me"))
    async with httpx.AsyncClient(timeout=15) as browser:
        query = await gw.authorize(browser)
        callback = await browser.get(
            f"{gw.url}/oauth/callback", params={"code": "c0de", "state": query["state"]}
        )
    connection = await _connection(gw, (await _all_connections(gw))[0]["id"])
    sent = form(token.calls.last.request)
    traded = exchange.calls.last.request.url.params

    assert callback.status_code == 200, callback.text
    assert query["_url"] == AUTH
    assert query["scope"] == (
        "instagram_business_basic,instagram_business_manage_comments,"
        "instagram_business_manage_messages"
    )
    assert sent["grant_type"] == "authorization_code"
    assert (sent["client_id"], sent["client_secret"], sent["code"]) == (
        CLIENT_ID,
        CLIENT_SECRET,
        "c0de",
    )
    assert "authorization" not in token.calls.last.request.headers
    assert dict(traded) == {
        "grant_type": "ig_exchange_token",
        "access_token": "ig-short",
        "client_secret": CLIENT_SECRET,
    }
    assert me.calls.last.request.headers["authorization"] == "Bearer ig-long"
    assert connection["account"]["id"] == ACCOUNT
    assert connection["status"] == "active"


async def test_connect_reads_the_wrapped_code_exchange_answer(provider_gateway: Any) -> None:
    """Step 2's documented ``{"data": [{...}]}`` links too; its permissions are the scopes."""
    gw: ProviderGateway = await provider_gateway("instagram", ENDPOINTS)
    gw.router.post(TOKEN).mock(return_value=_json("token_wrapped"))
    exchange = gw.router.get("https://graph.ig.test/access_token").mock(
        return_value=_json("long_lived")
    )
    gw.router.get(f"{GRAPH}/me").mock(return_value=_json("me"))

    connection = await gw.link()

    assert exchange.calls.last.request.url.params["access_token"] == "ig-short"
    assert connection["status"] == "active"
    assert connection["scopes"] == [
        "instagram_business_basic",
        "instagram_business_manage_comments",
    ]


async def test_a_refused_code_exchange_is_a_clear_connect_error(provider_gateway: Any) -> None:
    """The guide's rejected response (error_type, error_message) is a 400 naming the refusal."""
    gw: ProviderGateway = await provider_gateway("instagram", ENDPOINTS)
    gw.router.post(TOKEN).mock(
        return_value=httpx.Response(
            400,
            json={
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Matching code was not found or was already used",
            },
        )
    )
    async with httpx.AsyncClient(timeout=15) as browser:
        query = await gw.authorize(browser)
        callback = await browser.get(
            f"{gw.url}/oauth/callback", params={"code": "c0de", "state": query["state"]}
        )

    assert callback.status_code == 400
    assert "did not accept the sign-in (OAuthException)" in callback.text
    assert await _all_connections(gw) == []


@pytest.mark.parametrize(
    "answer",
    [
        {"data": []},
        {"data": [{"access_token": "a"}, {"access_token": "b"}]},
        {"data": ["ig-short"]},
    ],
)
def test_a_wrapper_without_exactly_one_token_object_is_left_unread(answer: Any) -> None:
    """An empty, doubled or non-object wrapper stays as sent (then refused as malformed)."""
    assert token_answer(answer) == answer


def test_the_flat_answer_gains_its_permissions_as_scope() -> None:
    """The Basic Display form (flat) reads the same; a list of permissions is joined."""
    flat = {"access_token": "t", "user_id": 1, "permissions": ["a", "b"]}

    assert token_answer(flat)["scope"] == "a,b"
    assert token_answer({"access_token": "t", "scope": "x"}) == {"access_token": "t", "scope": "x"}


async def _all_connections(gw: ProviderGateway) -> list[dict[str, Any]]:
    async with gw.api() as api:
        body = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()
    return list(body["connections"])


async def test_media_pages_to_the_end_through_an_empty_page(provider_gateway: Any) -> None:
    """paging.next is followed, an empty page with a next link included, until it is absent."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        side_effect=[_json(f"media_page{n}") for n in (1, 2, 3)]
    )
    records, pages = await gw.all_records(connection_id, "media")

    assert pages == 3
    assert route.call_count == 3
    assert route.calls[1].request.url.params["after"] == "QVFIUmJ2"
    assert route.calls[2].request.url.params["after"] == "QVFIUmJ3"
    assert route.calls[0].request.headers["authorization"] == "Bearer ig-long"
    assert {r["customer_id"] for r in records} == {"acme"}


async def test_media_visibility_case_by_case(provider_gateway: Any) -> None:
    """FEED and REELS (on the feed or not) are public; STORY, AD, no product type: dropped."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        side_effect=[_json(f"media_page{n}") for n in (1, 2, 3)]
    )
    records, _ = await gw.all_records(connection_id, "media")

    assert {r["id"]: r["visibility"] for r in records} == {
        "17895695668004550": "public",  # FEED
        "17895695668004551": "public",  # REELS, is_shared_to_feed false: still on the Reels tab
        "17895695668004554": "public",  # REELS, shared to feed
    }
    assert all(r["subjects"] == [] for r in records)  # the account's own posts name no End User


async def test_comments_page_to_the_end_and_hidden_ones_are_dropped(
    provider_gateway: Any,
) -> None:
    """Visible comments are direct with their author typed; hidden or unflagged ones are dropped."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{GRAPH}/{MEDIA_ID}/comments").mock(
        side_effect=[_json("comments_page1"), _json("comments_page2")]
    )
    records, pages = await gw.all_records(connection_id, "comments", media_id=MEDIA_ID)
    by_id = {r["id"]: r for r in records}

    assert pages == 2
    assert list(by_id) == ["17870913679156914", "17870913679156916"]
    assert by_id["17870913679156914"]["visibility"] == "direct"
    assert by_id["17870913679156914"]["data"]["author_username"] == "jane.roe"
    assert by_id["17870913679156914"]["subjects"] != []
    assert by_id["17870913679156916"]["subjects"] == []  # the account's own reply
    assert "hidden" in route.calls[0].request.url.params["fields"]


async def test_a_malformed_media_id_is_refused_before_any_call(provider_gateway: Any) -> None:
    """A media_id that is not a Graph id is a 400, and Instagram is never called."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=GRAPH).mock(return_value=_json("comments_page2"))
    calls_before = route.call_count
    response = await gw.records(connection_id, "comments", media_id="../me")

    assert response.status_code == 400
    assert route.call_count == calls_before


async def test_conversations_are_direct_and_read_with_platform_instagram(
    provider_gateway: Any,
) -> None:
    """DM threads are direct; the End User participant (not the account) is the subject."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{GRAPH}/me/conversations").mock(
        side_effect=[_json("conversations_page1"), _json("conversations_page2")]
    )
    records, pages = await gw.all_records(connection_id, "conversations")
    [thread] = records

    assert pages == 2
    assert route.calls[0].request.url.params["platform"] == "instagram"
    assert thread["visibility"] == "direct"
    assert thread["data"]["participant_usernames"] == ["jane.roe"]
    assert thread["data"]["messages"][0]["text"] == "Hi, is my order shipped?"


async def test_refresh_trades_the_long_lived_token_itself(provider_gateway: Any) -> None:
    """Near expiry, the long-lived token is traded with ig_refresh_token; no app secret is sent."""
    expiring = {**fixture("instagram", "long_lived"), "expires_in": 1}
    gw, connection_id = await _linked(provider_gateway, long_lived=expiring)
    refresh = gw.router.get("https://graph.ig.test/refresh_access_token").mock(
        return_value=_json("refreshed")
    )
    media = gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        return_value=_json("media_page3")
    )
    response = await gw.records(connection_id, "media")

    assert response.status_code == 200, response.text
    assert dict(refresh.calls.last.request.url.params) == {
        "grant_type": "ig_refresh_token",
        "access_token": "ig-long",
    }
    assert media.calls.last.request.headers["authorization"] == "Bearer ig-long-2"
    assert (await _connection(gw, connection_id))["status"] == "active"


async def test_oauth_exception_190_needs_reauth_when_the_token_cannot_be_refreshed(
    provider_gateway: Any,
) -> None:
    """A 190 on the API is retried once after ig_refresh_token; a 190 there too needs re-consent."""
    gw, connection_id = await _linked(provider_gateway)
    refresh = gw.router.get("https://graph.ig.test/refresh_access_token").mock(
        return_value=_json("error_expired", 400)
    )
    gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        return_value=_json("error_expired", 400)
    )
    response = await gw.records(connection_id, "media")

    assert response.status_code == 409, response.text
    assert refresh.call_count == 1
    assert (await _connection(gw, connection_id))["status"] == "needs_reauth"
    assert "ig-long" not in response.text


async def test_a_rate_limit_code_is_passed_on_with_the_documented_wait(
    provider_gateway: Any,
) -> None:
    """Code 17 without Retry-After: a 429 at once with Retry-After 60; the connection stays fine."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        return_value=_json("error_rate_limited", 400)
    )
    response = await gw.records(connection_id, "media")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert route.call_count == 1
    assert (await _connection(gw, connection_id))["status"] == "active"


async def test_a_business_use_case_limit_announces_meta_s_own_estimate(
    provider_gateway: Any,
) -> None:
    """X-Business-Use-Case-Usage estimates 5 minutes (its unit): Retry-After is 300, not 60."""
    gw, connection_id = await _linked(provider_gateway)
    usage = (
        '{"17841405793187218": [{"type": "instagram", "call_count": 100, "total_cputime": 12,'
        ' "total_time": 15, "estimated_time_to_regain_access": 5}]}'
    )
    route = gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        return_value=_json("error_rate_limited", 400, **{"X-Business-Use-Case-Usage": usage})
    )
    response = await gw.records(connection_id, "media")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "300"
    assert route.call_count == 1
    assert (await _connection(gw, connection_id))["status"] == "active"


async def test_every_rate_limit_code_is_retry_later(provider_gateway: Any) -> None:
    """Codes 4, 17, 32 and 613 all answer 429, never a re-auth or a permanent error."""
    gw, connection_id = await _linked(provider_gateway)
    bodies = [
        {"error": {"message": "limit", "type": "OAuthException", "code": code, "fbtrace_id": "A"}}
        for code in (4, 17, 32, 613)
    ]
    gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        side_effect=[httpx.Response(400, json=body) for body in bodies]
    )
    statuses = [(await gw.records(connection_id, "media")).status_code for _ in bodies]

    assert statuses == [429, 429, 429, 429]
    assert (await _connection(gw, connection_id))["status"] == "active"


async def test_a_short_retry_after_is_waited_out(provider_gateway: Any) -> None:
    """A rate-limit answer with Retry-After: 1 is retried after the wait and then succeeds."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{GRAPH}/me/media").mock(
        side_effect=[_json("error_rate_limited", 400, **{"Retry-After": "1"}), _json("media_page3")]
    )
    response = await gw.records(connection_id, "media")

    assert response.status_code == 200, response.text
    assert route.call_count == 2


async def test_disconnect_deletes_the_tokens_without_a_provider_call(
    provider_gateway: Any,
) -> None:
    """Instagram Login documents no revocation endpoint: disconnect is local and says so."""
    gw, connection_id = await _linked(provider_gateway)
    calls_before = len(gw.router.calls)
    async with gw.api() as api:
        response = await api.delete(f"/v1/connections/{connection_id}")
    after = await gw.records(connection_id, "media")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at_provider"] is False
    assert len(gw.router.calls) == calls_before
    assert after.status_code >= 400
