"""Portability through Facebook Pages: Page ids from the scoped Page tokens, comments per post.

A live gateway whose Graph API is a respx stand-in answering the documented
shapes (the fixtures of tests/providers/facebook). The walk finds the Page id
among the objects the connection holds a Page token for, reads the Page's
feed with it, and reads the comments of each released post.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.providers.conftest import CUSTOMER, ProviderGateway, provider_gateway  # noqa: F401
from tests.providers.stand import fixture

BASE = "https://graph.fb.test/v21.0"
ENDPOINTS = {
    "authorize_url": "https://www.fb.test/v21.0/dialog/oauth",
    "token_url": f"{BASE}/oauth/access_token",
    "revoke_url": f"{BASE}/me/permissions",
    "userinfo_url": f"{BASE}/me?fields=id,name",
    "api_base_url": BASE,
}
PAGE = "1029384756"
ACCOUNTS = {"data": [{"access_token": "fb-page-token", "name": "Acme", "id": PAGE}]}
JANE_ROE = "5550001"  # the author of comment 1_900 in comments_page1.json


def _pages(name: str, *numbers: int) -> list[httpx.Response]:
    return [httpx.Response(200, json=fixture("facebook", f"{name}_page{n}")) for n in numbers]


async def _linked(provider_gateway: Any) -> tuple[ProviderGateway, str]:  # noqa: F811
    gw: ProviderGateway = await provider_gateway("facebook", ENDPOINTS)
    gw.router.post(f"{BASE}/oauth/access_token").mock(
        return_value=httpx.Response(200, json={"access_token": "fb-short", "expires_in": 5400})
    )
    gw.router.get(f"{BASE}/oauth/access_token").mock(
        return_value=httpx.Response(200, json={"access_token": "fb-long", "expires_in": 5183944})
    )
    gw.router.get(f"{BASE}/me").mock(
        return_value=httpx.Response(200, json={"id": "10158", "name": "Ada Owner"})
    )
    gw.router.get(f"{BASE}/me/accounts").mock(return_value=httpx.Response(200, json=ACCOUNTS))
    connection = await gw.link()
    return gw, str(connection["id"])


async def test_a_page_visitors_comment_reaches_the_bundle(provider_gateway: Any) -> None:  # noqa: F811
    """Jane Roe's comment on the Page's post is in her bundle; each page was read once."""
    gw, connection_id = await _linked(provider_gateway)
    feed = gw.router.get(url__startswith=f"{BASE}/{PAGE}/feed").mock(
        side_effect=_pages("feed", 1, 2, 3)
    )
    comments = gw.router.get(url__startswith=f"{BASE}/{PAGE}_1/comments").mock(
        side_effect=_pages("comments", 1, 2, 3)
    )
    gw.router.get(url__startswith=f"{BASE}/{PAGE}/conversations").mock(
        side_effect=_pages("conversations", 1, 2)
    )
    subject = {"provider_user_ids": [{"provider": "facebook", "id": JANE_ROE}]}
    async with gw.api() as api:
        filed = await api.post(
            "/v1/processor-requests",
            json={
                "customer_id": CUSTOMER,
                "kind": "portability",
                "subject": subject,
                "verified_by": "dpo@acme",
            },
        )
        assert filed.status_code == 201, filed.text
        done = await _finished(api, filed.json()["id"])
        result = (await api.get(f"/v1/processor-requests/{done['id']}/result")).json()
    links = {f["name"]: f["url"] for f in result["files"]}
    async with httpx.AsyncClient(base_url=gw.url) as anonymous:
        bundle = json.loads((await anonymous.get(links["records.json"])).content)

    # Her comment (read per post) and the Messenger thread she opened (conversations_page1).
    assert [(r["resource"], r["id"]) for r in bundle["records"]] == [
        ("page.comments", "1_900"),
        ("page.conversations", "t_100001"),
    ]
    assert {r["connection_id"] for r in bundle["records"]} == {connection_id}
    assert result["result"]["manifest"]["not_fetched"] == []
    assert feed.call_count == 3  # the feed is read once, for itself and as the parent
    assert comments.call_count == 3
    assert comments.calls[0].request.headers["authorization"] == "Bearer fb-page-token"


async def _finished(api: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await api.get(f"/v1/processor-requests/{request_id}")).json()
        if body["status"] in {"completed", "failed", "rejected"}:
            assert body["status"] == "completed", body
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"request still {body['status']}")
