"""The sandbox API: bearer authentication, scopes, paging and per-account data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Clock, Flow


@pytest.fixture
async def access_token(flow: Flow) -> str:
    token: str = (await flow.tokens())["access_token"]
    return token


async def test_me_describes_the_linked_account(flow: Flow, access_token: str) -> None:
    """/api/me returns the account holder and the page they linked."""
    me = (await flow.api("/api/me", access_token)).json()
    assert (me["id"], me["page"]["id"]) == ("usr_ada", "page_northwind")


async def test_missing_token_is_401_with_a_bare_bearer_challenge(flow: Flow) -> None:
    """RFC 6750 §3.1: no credentials, no error code, just the Bearer challenge."""
    response = await flow.client.get("/api/posts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="sandbox"'


async def test_unknown_token_is_401_invalid_token(flow: Flow) -> None:
    """An access token the sandbox never issued is invalid_token."""
    response = await flow.api("/api/posts", "forged")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_expired_token_is_401_invalid_token(
    flow: Flow, access_token: str, clock: Clock
) -> None:
    """An access token past its expires_in is answered 401 invalid_token."""
    assert (await flow.api("/api/posts", access_token)).status_code == 200
    clock.advance(3600)
    response = await flow.api("/api/posts", access_token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


async def test_refreshed_token_works_after_expiry(flow: Flow, clock: Clock) -> None:
    """After expiry, a refreshed access token reads the API again."""
    tokens = await flow.tokens()
    clock.advance(4000)
    fresh = (await flow.refresh(tokens["refresh_token"])).json()
    assert (await flow.api("/api/posts", fresh["access_token"])).status_code == 200


async def test_missing_scope_is_403_insufficient_scope(flow: Flow) -> None:
    """A token without calendar.read cannot read events (RFC 6750 §3.1 insufficient_scope)."""
    token = (await flow.tokens(scope="openid posts.read"))["access_token"]
    response = await flow.api("/api/events", token)
    assert response.status_code == 403
    assert 'scope="calendar.read"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "total"),
    [
        ("/api/posts", 12),
        ("/api/posts/post_1001/comments", 5),
        ("/api/conversations", 3),
        ("/api/events", 7),
    ],
)
async def test_paging_reaches_every_item_once(
    flow: Flow, access_token: str, path: str, total: int
) -> None:
    """Following next_page_token walks the collection to its end, each item once."""
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(20):
        body = (await flow.api(path, access_token, **params)).json()
        assert len(body["data"]) <= 2
        seen.extend(item["id"] for item in body["data"])
        token = body["paging"].get("next_page_token")
        if token is None:
            break
        params = {"limit": "2", "page_token": token}
    assert len(seen) == total
    assert len(set(seen)) == total


async def test_default_page_size_is_five(flow: Flow, access_token: str) -> None:
    """Without limit a page holds five items."""
    body = (await flow.api("/api/posts", access_token)).json()
    assert len(body["data"]) == 5
    assert body["paging"]["next_page_token"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "26"}, {"limit": "x"},
                                    {"page_token": "garbage"}, {"page_token": "bzp4"}])  # fmt: skip
async def test_bad_paging_parameters_are_400(
    flow: Flow, access_token: str, params: dict[str, str]
) -> None:
    """A limit out of range or a page token the API did not issue is a 400."""
    response = await flow.api("/api/posts", access_token, **params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_comments_of_an_unknown_post_are_404(flow: Flow, access_token: str) -> None:
    """Comments of a post that is not the page's are not found."""
    response = await flow.api("/api/posts/post_5001/comments", access_token)
    assert response.status_code == 404


async def test_each_account_sees_only_its_own_data(flow: Flow) -> None:
    """Ben's token reads Ben's page, never Ada's posts."""
    token = (await flow.tokens(login_hint="usr_ben"))["access_token"]
    posts = (await flow.api("/api/posts", token)).json()["data"]
    assert [post["id"] for post in posts] == ["post_5001"]


async def test_userinfo_returns_the_claims_the_scopes_allow(flow: Flow) -> None:
    """/userinfo returns sub, and email only with the email scope."""
    token = (await flow.tokens(scope="openid profile"))["access_token"]
    response = await flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {"sub": "usr_ada", "name": "Ada Baker"}


async def test_userinfo_needs_a_valid_token(flow: Flow) -> None:
    """/userinfo without a valid bearer token is 401."""
    response = await flow.client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
