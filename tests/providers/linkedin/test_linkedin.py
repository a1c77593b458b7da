"""LinkedIn: organization posts' visibility table and offset paging through the gateway."""

from __future__ import annotations

import httpx
import pytest

from providers.linkedin import post_visibility
from tests.conftest import Servers
from tests.providers.stand import fixture, open_stand

ORG = "2414183"


@pytest.mark.parametrize(
    ("post_id", "expected"), sorted(fixture("linkedin", "expected_visibility").items())
)
def test_visibility_case_by_case(post_id: str, expected: str) -> None:
    """visibility + lifecycleState + feedDistribution map as the module's table says."""
    items = [i for n in ("posts_page1", "posts_page2") for i in fixture("linkedin", n)["elements"]]
    [post] = [item for item in items if item["id"] == post_id]

    assert post_visibility(post).value == expected


async def test_connect_then_page_organization_posts(database_url: str, servers: Servers) -> None:
    """OIDC link, then start/count paging with the version headers; only the public post stays."""
    stand = await open_stand(servers, database_url, "linkedin")
    token = {"access_token": "AQV-first", "expires_in": 5184000, "scope": "r_organization_social"}
    answer = await stand.link(
        lambda: {**token, "id_token": stand.id_token({"sub": "782bbtaQ", "name": "Ada Owner"})}
    )
    connection = await stand.connection()
    seen: list[httpx.Request] = []

    def page(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        start = request.url.params.get("start", "0")
        return httpx.Response(
            200, json=fixture("linkedin", "posts_page1" if start == "0" else "posts_page2")
        )

    stand.router.get(stand.url("api_base_url") + "/rest/posts").mock(side_effect=page)

    kept = await stand.all_records(
        connection["id"], "organization.posts", organization_id=ORG, limit="4"
    )

    assert answer.status_code == 200, answer.text
    assert [r["id"] for r in kept] == ["urn:li:share:7012345678901234567"]
    assert seen[0].url.params["author"] == f"urn:li:organization:{ORG}"
    assert seen[0].headers["linkedin-version"] == "202405"
    assert seen[1].url.params["start"] == "4"
