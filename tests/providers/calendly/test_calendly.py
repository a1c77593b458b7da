"""Calendly API v2 through the gateway, against respx stand-ins.

Shapes follow developer.calendly.com: "Get Access Token" / "Refresh Token"
(single-use rotation), "Revoke Access/Refresh Token", "Get current user",
"List Events", "List Event Invitees", "Rate Limits" and the error bodies.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from gateway.callers import CallerKind, create_caller
from gateway.storage import create_engine
from policies.vocabulary import CallerClass
from tests.providers.conftest import CLIENT_ID, CLIENT_SECRET, CUSTOMER, ProviderGateway, form
from tests.providers.stand import fixture

AUTH = "https://auth.cal.test"
API = "https://api.cal.test"
ENDPOINTS = {
    "authorize_url": f"{AUTH}/oauth/authorize",
    "token_url": f"{AUTH}/oauth/token",
    "revoke_url": f"{AUTH}/oauth/revoke",
    "userinfo_url": f"{API}/users/me",
    "api_base_url": API,
}
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
OWNER = "https://api.calendly.com/users/AAAAAAAAAAAAAAAA"
EVENT = "GBGBDCAADAEDCRZ2"
MARKETING = "marketing.communications"
JANE_PHONE = "+1 212-555-0100"


def _json(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=fixture("calendly", name), headers=headers)


async def _linked(
    provider_gateway: Any, token: dict[str, Any] | None = None
) -> tuple[ProviderGateway, str]:
    gw: ProviderGateway = await provider_gateway("calendly", ENDPOINTS)
    gw.router.post(f"{AUTH}/oauth/token").mock(
        return_value=httpx.Response(200, json=token or fixture("calendly", "token"))
    )
    gw.router.get(f"{API}/users/me").mock(return_value=_json("users_me"))
    connection = await gw.link()
    return gw, connection["id"]


async def _connection(gw: ProviderGateway, connection_id: str) -> dict[str, Any]:
    async with gw.api() as api:
        return dict((await api.get(f"/v1/connections/{connection_id}")).json())


async def _key(gw: ProviderGateway, *, purposes: list[str], caller_class: CallerClass) -> str:
    engine = create_engine(gw.database_url)
    try:
        _, key = await create_caller(
            engine,
            kind=CallerKind.SERVICE,
            name=f"svc-{caller_class.value}",
            customers=[CUSTOMER],
            purposes=purposes,
            caller_class=caller_class,
        )
    finally:
        await engine.dispose()
    return key


async def _invitees(gw: ProviderGateway, connection_id: str, key: str, purpose: str) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=15) as api:
        response = await api.get(
            f"/v1/connections/{connection_id}/records/invitees",
            params={"purpose": purpose, "event_uuid": EVENT},
        )
    assert response.status_code == 200, response.text
    return response.json()


def _phones(record: dict[str, Any]) -> list[str]:
    return [
        identifier["value"]
        for subject in record["subjects"]
        for identifier in subject["identifiers"]
        if identifier["kind"] == "phone"
    ]


async def test_connect_uses_pkce_basic_auth_and_users_me(provider_gateway: Any) -> None:
    """Authorize carries S256 PKCE; the code is exchanged with Basic auth; /users/me names it."""
    gw: ProviderGateway = await provider_gateway("calendly", ENDPOINTS)
    token = gw.router.post(f"{AUTH}/oauth/token").mock(return_value=_json("token"))
    me = gw.router.get(f"{API}/users/me").mock(return_value=_json("users_me"))
    connection_id = (await gw.link())["id"]
    connection = await _connection(gw, connection_id)
    async with httpx.AsyncClient(timeout=15) as browser:
        query = await gw.authorize(browser)

    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == "users:read scheduled_events:read"
    assert token.calls.last.request.headers["authorization"] == BASIC
    assert form(token.calls.last.request)["grant_type"] == "authorization_code"
    assert "client_secret" not in form(token.calls.last.request)
    assert me.calls.last.request.headers["authorization"] == "Bearer cal-access-1"
    assert connection["account"]["id"] == OWNER
    assert connection["status"] == "active"


async def test_profile_is_the_linked_user(provider_gateway: Any) -> None:
    """The profile resource is the linking user's own /users/me, released as direct."""
    gw, connection_id = await _linked(provider_gateway)
    body = (await gw.records(connection_id, "profile")).json()
    [profile] = body["records"]

    assert profile["id"] == OWNER
    assert profile["visibility"] == "direct"
    assert profile["data"]["email"] == "ada@acme.example"
    assert body["next_cursor"] is None


async def test_scheduled_events_page_through_next_page_token_to_the_end(
    provider_gateway: Any,
) -> None:
    """page_token follows next_page_token, an empty page included; an id-only event is dropped."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{API}/scheduled_events").mock(
        side_effect=[_json(f"events_page{n}") for n in (1, 2, 3)]
    )
    records, pages = await gw.all_records(connection_id, "scheduled_events")
    sent = [call.request.url.params for call in route.calls]

    assert pages == 3
    assert [s.get("page_token") for s in sent] == [None, "tok-2", "tok-3"]
    assert {s["user"] for s in sent} == {OWNER}
    assert {r["id"]: r["visibility"] for r in records} == {
        f"https://api.calendly.com/scheduled_events/{EVENT}": "direct",
        "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ3": "direct",  # canceled
    }
    assert records[1]["data"]["cancellation_reason"] == "Sick"
    assert records[0]["data"]["guest_emails"] == ["guest@partner.example"]


async def test_invitees_are_direct_with_answers_and_the_reminder_number(
    provider_gateway: Any,
) -> None:
    """Active and canceled invitees are direct; one without a status is dropped as unknown."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(url__startswith=f"{API}/scheduled_events/{EVENT}/invitees").mock(
        side_effect=[_json("invitees_page1"), _json("invitees_page2")]
    )
    records, pages = await gw.all_records(connection_id, "invitees", event_uuid=EVENT)
    jane = records[0]

    assert pages == 2
    assert route.calls[1].request.url.params["page_token"] == "inv-2"
    assert [r["data"]["name"] for r in records] == ["Jane Roe", "Sam Lee"]
    assert {r["visibility"] for r in records} == {"direct"}
    assert jane["data"]["questions_and_answers"] == [
        {"question": "What would you like to discuss?", "answer": "Pricing"}
    ]
    assert jane["data"]["text_reminder_number"] == "+12125550100"
    assert jane["categories"]["text_reminder_number"] == "user.contact.phone_number"
    assert _phones(jane) == ["+12125550100"]


async def test_marketing_never_sees_the_sms_reminder_number(provider_gateway: Any) -> None:
    """Even with the invitee's marketing consent, text_reminder_number is redacted by sms-phone."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{API}/scheduled_events/{EVENT}/invitees").mock(
        return_value=_json("invitees_page1")
    )
    async with gw.api() as api:
        consent = await api.put(
            f"/v1/customers/{CUSTOMER}/consents",
            json={"subject": {"emails": ["jane@customer.example"]}, "purpose": MARKETING},
        )
    assert consent.status_code == 200, consent.text
    key = await _key(gw, purposes=[MARKETING], caller_class=CallerClass.INTERNAL)
    body = await _invitees(gw, connection_id, key, MARKETING)
    [jane] = body["records"]

    assert jane["data"]["email"] == "jane@customer.example"
    assert "text_reminder_number" not in jane["data"]
    assert _phones(jane) == []
    assert {"record_id": jane["id"], "field": "text_reminder_number", "rule_id": "sms-phone"} in (
        body["redacted"]
    )
    assert "555" not in str(jane)


async def test_a_third_party_caller_never_sees_the_sms_reminder_number(
    provider_gateway: Any,
) -> None:
    """A third-party service, even for essential.service, gets the invitee without the number."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(url__startswith=f"{API}/scheduled_events/{EVENT}/invitees").mock(
        return_value=_json("invitees_page1")
    )
    key = await _key(gw, purposes=["essential.service"], caller_class=CallerClass.THIRD_PARTY)
    body = await _invitees(gw, connection_id, key, "essential.service")
    [jane] = body["records"]

    assert jane["data"]["name"] == "Jane Roe"
    assert "text_reminder_number" not in jane["data"]
    assert _phones(jane) == []
    assert "sms-phone" in {item["rule_id"] for item in body["redacted"]}


async def test_refresh_stores_the_rotated_refresh_token(provider_gateway: Any) -> None:
    """Each refresh sends the refresh token the previous one returned, with Basic auth."""
    expiring = {**fixture("calendly", "token"), "expires_in": 1}
    gw, connection_id = await _linked(provider_gateway, token=expiring)
    third = {**fixture("calendly", "refreshed"), "access_token": "cal-access-3"}
    third["refresh_token"] = "cal-refresh-3"
    token = gw.router.post(f"{AUTH}/oauth/token").mock(
        side_effect=[
            httpx.Response(200, json={**fixture("calendly", "refreshed"), "expires_in": 1}),
            httpx.Response(200, json=third),
        ]
    )
    profile = gw.router.get(f"{API}/users/me").mock(return_value=_json("users_me"))
    assert (await gw.records(connection_id, "profile")).status_code == 200
    assert (await gw.records(connection_id, "profile")).status_code == 200
    refreshes = [c.request for c in token.calls if form(c.request)["grant_type"] == "refresh_token"]

    assert [form(r)["refresh_token"] for r in refreshes] == ["cal-refresh-1", "cal-refresh-2"]
    assert {r.headers["authorization"] for r in refreshes} == {BASIC}
    assert profile.calls.last.request.headers["authorization"] == "Bearer cal-access-3"


async def test_a_401_then_a_refused_refresh_needs_reauth(provider_gateway: Any) -> None:
    """401 Unauthenticated triggers one refresh; invalid_grant there moves it to needs_reauth."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.post(f"{AUTH}/oauth/token").mock(return_value=_json("invalid_grant", 400))
    gw.router.get(f"{API}/users/me").mock(return_value=_json("error_unauthenticated", 401))
    response = await gw.records(connection_id, "profile")

    assert response.status_code == 409, response.text
    assert (await _connection(gw, connection_id))["status"] == "needs_reauth"
    assert "cal-refresh-1" not in response.text


async def test_a_429_announces_x_ratelimit_reset_seconds(provider_gateway: Any) -> None:
    """X-RateLimit-Reset is seconds until reset: 45 outlasts the deadline, so Retry-After: 45."""
    gw, connection_id = await _linked(provider_gateway)
    route = gw.router.get(f"{API}/users/me").mock(
        return_value=_json(
            "error_rate_limited",
            429,
            **{"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "45"},
        )
    )
    calls_before = route.call_count
    response = await gw.records(connection_id, "profile")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "45"
    assert route.call_count == calls_before + 1
    assert (await _connection(gw, connection_id))["status"] == "active"


async def test_a_short_x_ratelimit_reset_is_waited_out(provider_gateway: Any) -> None:
    """A reset one second away is waited for, and the retried call answers."""
    gw, connection_id = await _linked(provider_gateway)
    gw.router.get(f"{API}/users/me").mock(
        side_effect=[
            _json("error_rate_limited", 429, **{"X-RateLimit-Reset": "1"}),
            _json("users_me"),
        ]
    )
    response = await gw.records(connection_id, "profile")

    assert response.status_code == 200, response.text
    assert [r["id"] for r in response.json()["records"]] == [OWNER]


async def test_disconnect_revokes_with_credentials_in_the_body(provider_gateway: Any) -> None:
    """DELETE revokes at /oauth/revoke with client_id, client_secret and token in the form."""
    gw, connection_id = await _linked(provider_gateway)
    revoke = gw.router.post(f"{AUTH}/oauth/revoke").mock(return_value=httpx.Response(200, json={}))
    async with gw.api() as api:
        response = await api.delete(f"/v1/connections/{connection_id}")
    sent = [form(call.request) for call in revoke.calls]

    assert response.status_code == 200, response.text
    assert response.json()["revoked_at_provider"] is True
    assert [s["token"] for s in sent] == ["cal-refresh-1", "cal-access-1"]
    assert {(s["client_id"], s["client_secret"]) for s in sent} == {(CLIENT_ID, CLIENT_SECRET)}
    assert all("authorization" not in call.request.headers for call in revoke.calls)
