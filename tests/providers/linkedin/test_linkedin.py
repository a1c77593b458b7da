"""LinkedIn: organization posts' visibility table and offset paging through the gateway."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from gateway.config import load_settings
from gateway.vault import generate_key_entry
from providers.linkedin import API_VERSION, post_visibility, until_utc_midnight
from tests.conftest import Servers
from tests.providers.stand import CLIENT_ID, fixture, open_stand

ORG = "2414183"


@pytest.mark.parametrize(
    ("post_id", "expected"), sorted(fixture("linkedin", "expected_visibility").items())
)
def test_visibility_case_by_case(post_id: str, expected: str) -> None:
    """visibility + lifecycleState + feedDistribution map as the module's table says."""
    items = [i for n in ("posts_page1", "posts_page2") for i in fixture("linkedin", n)["elements"]]
    [post] = [item for item in items if item["id"] == post_id]

    assert post_visibility(post).value == expected


@pytest.mark.parametrize(
    ("section", "version"),
    [({}, API_VERSION), ({"api_version": "202608"}, "202608")],
    ids=["default-version", "operator-version"],
)
async def test_connect_then_page_organization_posts(
    database_url: str, servers: Servers, section: dict[str, str], version: str
) -> None:
    """OIDC link, then start/count paging with the version headers (the built-in
    LinkedIn-Version, or the operator's ``api_version``); only the public post stays."""
    stand = await open_stand(servers, database_url, "linkedin", section=section)
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
    assert seen[0].headers["linkedin-version"] == version
    assert seen[0].headers["x-restli-protocol-version"] == "2.0.0"
    assert seen[1].url.params["start"] == "4"


@pytest.mark.parametrize(
    ("date", "seconds"),
    [
        ("Sun, 29 Nov 2026 23:00:00 GMT", 3600.0),
        ("Mon, 30 Nov 2026 00:00:00 GMT", 86400.0),
        ("Mon, 30 Nov 2026 01:30:00 +0100", 84600.0),  # 00:30 UTC
    ],
)
def test_the_daily_limit_reopens_at_midnight_utc_by_linkedin_s_clock(
    date: str, seconds: float
) -> None:
    """The wait runs from the answer's Date to the next 00:00 UTC."""
    assert until_utc_midnight({"Date": date}) == seconds


@pytest.mark.parametrize("headers", [{}, {"Date": "yesterday"}, {"Date": "30 Nov 2026 00:00"}])
def test_no_readable_date_gives_no_wait_of_its_own(headers: dict[str, str]) -> None:
    """Without LinkedIn's clock the gateway's default Retry-After is announced."""
    assert until_utc_midnight(headers) is None


async def test_a_429_is_a_usage_cap_told_to_come_back_at_midnight_utc(
    database_url: str, servers: Servers
) -> None:
    """LinkedIn's daily limit: one call, a 429 whose Retry-After reaches 00:00 UTC."""
    stand = await open_stand(servers, database_url, "linkedin")
    token = {"access_token": "AQV-first", "expires_in": 5184000, "scope": "r_organization_social"}
    await stand.link(
        lambda: {**token, "id_token": stand.id_token({"sub": "782bbtaQ", "name": "Ada Owner"})}
    )
    connection = await stand.connection()
    route = stand.router.get(stand.url("api_base_url") + "/rest/posts").mock(
        return_value=httpx.Response(
            429,
            headers={"Date": "Sun, 29 Nov 2026 22:59:59 GMT"},
            json={"message": "Resource level throttle limit reached", "status": 429},
        )
    )
    response = await stand.records(connection["id"], "organization.posts", organization_id=ORG)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3601"
    assert route.call_count == 1


async def test_disconnect_revokes_with_the_credentials_in_the_body(
    database_url: str, servers: Servers
) -> None:
    """DELETE posts the access token to /oauth/v2/revoke with client_id and client_secret."""
    stand = await open_stand(servers, database_url, "linkedin")
    await stand.link(
        lambda: {"access_token": "AQV-first", "expires_in": 5184000,
                 "id_token": stand.id_token({"sub": "782bbtaQ"})}
    )  # fmt: skip
    connection = await stand.connection()
    revoke = stand.router.post(stand.url("revoke_url")).respond(200)

    async with stand.api() as api:
        response = await api.delete(f"/v1/connections/{connection['id']}")
    sent = [parse_qs(call.request.content.decode()) for call in revoke.calls]

    assert response.status_code in (200, 204), response.text
    assert [(f["token"], f["client_id"], f["client_secret"]) for f in sent] == [
        (["AQV-first"], [CLIENT_ID], ["stand-secret"])
    ]
    assert "authorization" not in revoke.calls.last.request.headers
    assert (await stand.connection())["status"] == "revoked"


def test_the_default_version_is_one_linkedin_still_supports() -> None:
    """202607: released July 2026, supported for at least a year (LinkedIn's versioning
    page), so until July 2027; the shared reference's 202405 was sunset in 2025."""
    assert API_VERSION == "202607"


REQUIRED = {"LINKGATE_VAULT_KEYS": generate_key_entry("k1"), "LINKGATE_SECRET_KEY": "x" * 48}


def test_an_operator_sets_the_linkedin_version_in_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    """``api_version`` in [providers.linkedin], or LINKGATE_PROVIDER_LINKEDIN_API_VERSION."""
    config = tmp_path / "linkgate.toml"
    config.write_text('[providers.linkedin]\nclient_id = "c"\napi_version = "202608"\n')

    from_file = load_settings(REQUIRED, config_path=config)
    from_env = load_settings(
        {**REQUIRED, "LINKGATE_PROVIDER_LINKEDIN_API_VERSION": "202609"}, config_path=config
    )

    assert from_file.providers["linkedin"].api_version == "202608"
    assert from_env.providers["linkedin"].api_version == "202609"
