"""Microsoft through the gateway: multi-tenant issuer, Graph paging, rolling refresh, AADSTS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.audit import AuditStore
from gateway.storage import audit_tables, create_engine
from providers.microsoft import event_visibility
from tests.conftest import Servers
from tests.providers.stand import CUSTOMER, Stand, fixture, open_stand

TEMPLATE = "https://microsoft.stand.test/{tenantid}/v2.0"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
EVENTS = "/v1.0/me/events"


def _claims(tid: str = TENANT, iss_tenant: str | None = None) -> dict[str, Any]:
    issuer = TEMPLATE.replace("{tenantid}", iss_tenant or tid)
    return {"sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": tid, "iss": issuer,
            "email": "ada@acme.example"}  # fmt: skip


async def _stand(servers: Servers, database_url: str) -> Stand:
    return await open_stand(servers, database_url, "microsoft", issuer=TEMPLATE)


async def _linked(servers: Servers, database_url: str) -> tuple[Stand, dict[str, Any]]:
    stand = await _stand(servers, database_url)
    tokens = fixture("microsoft", "token")
    answer = await stand.link(lambda: {**tokens, "id_token": stand.id_token(_claims())})
    assert answer.status_code == 200, answer.text
    return stand, await stand.connection()


async def test_an_admin_of_any_tenant_links_an_account(database_url: str, servers: Servers) -> None:
    """The issuer template filled with the token's own tid matches; the account keeps it."""
    _, connection = await _linked(servers, database_url)

    assert connection["status"] == "active"
    assert connection["account"]["issuer"] == TEMPLATE.replace("{tenantid}", TENANT)


async def test_the_grant_asked_for_is_sign_in_and_basic_calendar_reads_only(
    database_url: str, servers: Servers
) -> None:
    """minimal-scope: no User.Read (Graph /me is never read); Calendars.ReadBasic, not Read."""
    stand, _ = await _linked(servers, database_url)

    assert stand.authorize_params["scope"].split() == [
        "openid",
        "profile",
        "email",
        "offline_access",
        "Calendars.ReadBasic",
    ]


async def test_an_issuer_of_another_tenant_than_tid_is_refused(
    database_url: str, servers: Servers
) -> None:
    """iss naming tenant B while tid says tenant A links nothing."""
    stand = await _stand(servers, database_url)
    other = "00000000-0000-0000-0000-000000000001"
    answer = await stand.link(
        lambda: {
            **fixture("microsoft", "token"),
            "id_token": stand.id_token(_claims(iss_tenant=other)),
        }
    )

    assert answer.status_code == 400
    assert "iss does not match" in answer.text


async def test_events_follow_next_links_through_an_empty_page(
    database_url: str, servers: Servers
) -> None:
    """@odata.nextLink is followed to the end; only the direct event remains."""
    stand, connection = await _linked(servers, database_url)

    def page(request: httpx.Request) -> httpx.Response:
        skip = request.url.params.get("$skip")
        name = {None: "events_page1", "10": "events_page2"}.get(skip, "events_page3")
        return httpx.Response(200, json=fixture("microsoft", name))

    stand.router.get(stand.url("api_base_url") + EVENTS).mock(side_effect=page)

    kept = await stand.all_records(connection["id"], "calendar.events")

    assert [r["id"] for r in kept] == ["AAMkAGI1AAAt9AHkAAA="]
    assert kept[0]["customer_id"] == CUSTOMER
    assert kept[0]["data"]["attendee_emails"] == ["bob@client.example"]


async def test_a_next_link_to_another_origin_is_refused(
    database_url: str, servers: Servers
) -> None:
    """A nextLink leaving api_base_url's origin is never followed: 502 upstream-malformed."""
    stand, connection = await _linked(servers, database_url)
    body = {**fixture("microsoft", "events_page2"), "@odata.nextLink": "https://evil.example/x"}
    stand.router.get(stand.url("api_base_url") + EVENTS).respond(200, json=body)

    page = await stand.records(connection["id"], "calendar.events")

    assert page.status_code == 502
    assert page.json()["type"].endswith("/upstream-malformed")
    # Refused after the access check, so recorded like any failed read.
    engine = create_engine(database_url)
    try:
        found = await AuditStore(engine, audit_tables).search([CUSTOMER], action="records.read")
    finally:
        await engine.dispose()
    [event] = [
        e for e in found.events if e.trace_id == page.json().get("trace_id")
    ] or found.events[:1]
    assert (str(event.outcome), event.problem_type) == ("error", page.json()["type"])


@pytest.mark.parametrize(
    ("event_id", "expected"), sorted(fixture("microsoft", "expected_visibility").items())
)
def test_visibility_case_by_case(event_id: str, expected: str) -> None:
    """Each fixture event maps to the visibility the sensitivity table promises."""
    items = [
        item
        for name in ("events_page1", "events_page2", "events_page3")
        for item in fixture("microsoft", name)["value"]
    ]
    [event] = [item for item in items if item["id"] == event_id]

    assert event_visibility(event).value == expected


async def test_refresh_rolls_the_refresh_token(database_url: str, servers: Servers) -> None:
    """InvalidAuthenticationToken → refresh; the new refresh token is the one used next time."""
    stand, connection = await _linked(servers, database_url)
    rolled = fixture("microsoft", "refresh")
    answers = iter([rolled, {**rolled, "access_token": "eyJ0eXAi.third-access"}])
    token_route = stand.answer_token(lambda: next(answers))

    def userinfo(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != "Bearer eyJ0eXAi.third-access":
            return httpx.Response(401, json=fixture("microsoft", "error_auth"))
        return httpx.Response(200, json={"sub": "x", "email": "ada@acme.example"})

    stand.router.get(stand.url("api_base_url") + "/oidc/userinfo").mock(side_effect=userinfo)

    first = await stand.records(connection["id"], "profile")  # refreshed once, still refused
    second = await stand.records(connection["id"], "profile")  # refreshed with the rolled token

    assert first.status_code == 502
    assert second.status_code == 200, second.text
    assert b"refresh_token=0.AAAA.second-refresh" in token_route.calls.last.request.content


async def test_aadsts_invalid_grant_needs_reauth(database_url: str, servers: Servers) -> None:
    """AADSTS700082 (refresh token expired from inactivity) → needs_reauth."""
    stand, connection = await _linked(servers, database_url)
    stand.router.post(stand.url("token_url")).respond(
        400, json=fixture("microsoft", "invalid_grant")
    )
    stand.router.get(stand.url("api_base_url") + "/oidc/userinfo").respond(
        401, json=fixture("microsoft", "error_auth")
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 409
    assert (await stand.connection())["status"] == "needs_reauth"


async def test_an_invalid_client_secret_does_not_blame_the_customer(
    database_url: str, servers: Servers
) -> None:
    """AADSTS7000215 is the operator's to fix: 502, and the connection stays active."""
    stand, connection = await _linked(servers, database_url)
    stand.router.post(stand.url("token_url")).respond(
        401, json=fixture("microsoft", "invalid_client")
    )
    stand.router.get(stand.url("api_base_url") + "/oidc/userinfo").respond(
        401, json=fixture("microsoft", "error_auth")
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 502
    assert (await stand.connection())["status"] == "active"


async def test_429_honours_retry_after(database_url: str, servers: Servers) -> None:
    """Graph 429 with a Retry-After beyond the deadline: 429 upstream-rate-limited, same delay."""
    stand, connection = await _linked(servers, database_url)
    stand.router.get(stand.url("api_base_url") + "/oidc/userinfo").respond(
        429, json=fixture("microsoft", "error_throttled"), headers={"Retry-After": "120"}
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 429
    assert page.headers["retry-after"] == "120"


async def test_disconnect_without_a_revocation_endpoint(
    database_url: str, servers: Servers
) -> None:
    """Microsoft has no RFC 7009 endpoint: disconnecting calls nothing there and forgets tokens."""
    stand, connection = await _linked(servers, database_url)
    revoke = stand.router.post(stand.url("revoke_url")).respond(200)

    async with stand.api() as api:
        response = await api.delete(f"/v1/connections/{connection['id']}")

    assert response.status_code in (200, 204), response.text
    assert revoke.call_count == 0
