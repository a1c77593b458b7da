"""Portability through Facebook Pages: Page ids from the scoped Page tokens, comments per post.

A live gateway whose Graph API is a respx stand-in answering the documented
shapes (the fixtures of tests/providers/facebook). The walk finds the Page id
among the objects the connection holds a Page token for, reads the Page's
feed with it, and reads the comments of each released post.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.processor_requests.conftest import finished_through
from tests.providers.conftest import CUSTOMER, ProviderGateway, provider_gateway  # noqa: F401
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
ACCOUNTS = {"data": [{"access_token": "fb-page-token", "name": "Acme", "id": PAGE}]}
JANE_ROE = "5550001"  # the author of comment 1_900 in comments_page1.json
# Graph's HTTP 400 for an object that is gone or cannot be read: code 100, subcode 33,
# GraphMethodException (as SDK users report it, e.g. roughike/flutter_facebook_login#44).
DELETED = {"error": {"message": "Unsupported get request. Object with ID '1029384756_1' does not "
                     "exist, cannot be loaded due to missing permissions, or does not support "
                     "this operation.", "type": "GraphMethodException", "code": 100,
                     "error_subcode": 33, "fbtrace_id": "AbCdEf"}}  # fmt: skip


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
    body = await finished_through(api, request_id)
    assert body["status"] == "completed", body
    return body


async def test_a_post_whose_comments_the_provider_refuses_is_named_not_fetched(
    provider_gateway: Any,  # noqa: F811
) -> None:
    """Graph's answer for a deleted object (code 100) leaves that post's comments out, by name."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{BASE}/{PAGE}/feed").mock(side_effect=_pages("feed", 1, 2, 3))
    gw.router.get(url__startswith=f"{BASE}/{PAGE}_1/comments").mock(
        return_value=httpx.Response(400, json=DELETED)
    )
    gw.router.get(url__startswith=f"{BASE}/{PAGE}/conversations").mock(
        side_effect=_pages("conversations", 1, 2)
    )
    async with gw.api() as api:
        filed = await api.post(
            "/v1/processor-requests",
            json={
                "customer_id": CUSTOMER,
                "kind": "portability",
                "subject": {"provider_user_ids": [{"provider": "facebook", "id": JANE_ROE}]},
                "verified_by": "dpo@acme",
            },
        )
        done = await _finished(api, filed.json()["id"])

    manifest = done["result"]["manifest"]
    assert manifest["not_fetched"] == [
        {
            "connection_id": connection_id,
            "resource": "page.comments",
            "reason": "the provider refused it (upstream)",
            "params": {"page_id": PAGE, "post_id": f"{PAGE}_1"},
        }
    ]
    assert manifest["sources"] == [
        {"provider": "facebook", "connection_id": connection_id,
         "resource": "page.conversations", "records": 1}
    ]  # fmt: skip
