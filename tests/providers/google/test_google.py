"""Google through the gateway: linking, calendar paging and visibility, refresh, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from providers.google import PROVIDER, event_visibility
from tests.conftest import Servers
from tests.providers.stand import CUSTOMER, Stand, fixture, open_stand

SUB = "110248495921238986420"


def _token() -> dict[str, Any]:
    return fixture("google", "token")


async def _linked(servers: Servers, database_url: str) -> tuple[Stand, dict[str, Any]]:
    stand = await open_stand(servers, database_url, "google")
    tokens = _token()
    answer = await stand.link(
        lambda: {**tokens, "id_token": stand.id_token({"sub": SUB, "email": "owner@acme.example"})}
    )
    assert answer.status_code == 200, answer.text
    return stand, await stand.connection()


def _events(stand: Stand) -> None:
    def page(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("pageToken")
        name = {None: "events_page1", "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA": "events_page2"}.get(
            token, "events_page3"
        )
        return httpx.Response(200, json=fixture("google", name))

    stand.router.get(stand.url("api_base_url") + "/calendar/v3/calendars/primary/events").mock(
        side_effect=page
    )


async def test_connect_flow_links_an_active_google_account(
    database_url: str, servers: Servers
) -> None:
    """Authorize (offline, consent) → callback → code exchange → ID token → active connection."""
    stand, connection = await _linked(servers, database_url)

    assert stand.authorize_params["access_type"] == "offline"
    assert stand.authorize_params["prompt"] == "consent"
    # minimal-scope: only the owned calendars' events, not every calendar shared with it
    assert stand.authorize_params["scope"].split() == [
        "openid",
        "email",
        "profile",
        "https://www.googleapis.com/auth/calendar.events.owned.readonly",
    ]
    assert connection["status"] == "active"
    assert connection["account"]["id"] == SUB
    assert connection["account"]["name"] == "owner@acme.example"


async def test_an_id_token_from_another_issuer_is_refused(
    database_url: str, servers: Servers
) -> None:
    """An ID token naming another issuer links nothing (OIDC Core §3.1.3.7)."""
    stand = await open_stand(servers, database_url, "google")
    answer = await stand.link(
        lambda: {**_token(), "id_token": stand.id_token({"sub": SUB, "iss": "https://evil"})}
    )

    assert answer.status_code == 400
    assert "iss does not match" in answer.text


async def test_calendar_events_page_to_the_end_through_an_empty_page(
    database_url: str, servers: Servers
) -> None:
    """nextPageToken is followed across an empty page; only direct and public events remain."""
    stand, connection = await _linked(servers, database_url)
    _events(stand)

    kept = await stand.all_records(connection["id"], "calendar.events")

    assert [r["id"] for r in kept] == ["demo-jane", "meetup"]
    assert {r["customer_id"] for r in kept} == {CUSTOMER}


async def test_attendee_emails_are_normalized_subjects(database_url: str, servers: Servers) -> None:
    """The other attendee's email is lower-cased and typed; the calendar owner is no subject."""
    stand, connection = await _linked(servers, database_url)
    _events(stand)

    page = (await stand.records(connection["id"], "calendar.events")).json()
    [demo] = page["records"]

    assert demo["data"]["attendee_emails"] == ["jane@customer.example"]
    assert demo["categories"]["attendee_emails"] == "user.contact.email"
    assert demo["subjects"] == [
        {"role": "attendee", "identifiers": [{"kind": "email", "value": "jane@customer.example"}]}
    ]


@pytest.mark.parametrize(
    ("event_id", "expected"), sorted(fixture("google", "expected_visibility").items())
)
def test_visibility_case_by_case(event_id: str, expected: str) -> None:
    """Each fixture event maps to the visibility the module's table promises."""
    items = [
        item
        for name in ("events_page1", "events_page2", "events_page3")
        for item in fixture("google", name)["items"]
    ]
    [event] = [item for item in items if item["id"] == event_id]

    assert event_visibility(event).value == expected


async def test_an_auth_error_refreshes_and_keeps_the_old_refresh_token(
    database_url: str, servers: Servers
) -> None:
    """401 authError → one refresh (no new refresh token: the old one is kept) → the retry works."""
    stand, connection = await _linked(servers, database_url)
    token_route = stand.answer_token(lambda: fixture("google", "refresh"))
    calls: list[str] = []

    def userinfo(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer ya29.first-access":
            return httpx.Response(401, json=fixture("google", "error_auth"))
        return httpx.Response(200, json=fixture("google", "userinfo"))

    stand.router.get(stand.url("api_base_url") + "/oauth2/v3/userinfo").mock(side_effect=userinfo)

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 200, page.text
    assert calls == ["Bearer ya29.first-access", "Bearer ya29.second-access"]
    assert b"refresh_token=1%2F%2Ffirst-refresh" in token_route.calls.last.request.content


async def test_invalid_grant_on_refresh_needs_reauth(database_url: str, servers: Servers) -> None:
    """A revoked grant (400 invalid_grant) moves the connection to needs_reauth."""
    stand, connection = await _linked(servers, database_url)
    stand.router.post(stand.url("token_url")).respond(400, json=fixture("google", "invalid_grant"))
    stand.router.get(stand.url("api_base_url") + "/oauth2/v3/userinfo").respond(
        401, json=fixture("google", "error_auth")
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 409
    assert (await stand.connection())["status"] == "needs_reauth"


async def test_403_rate_limit_is_retried(database_url: str, servers: Servers) -> None:
    """403 usageLimits/rateLimitExceeded is a pacing signal: retried, then served."""
    stand, connection = await _linked(servers, database_url)
    stand.router.get(stand.url("api_base_url") + "/oauth2/v3/userinfo").mock(
        side_effect=[
            httpx.Response(403, json=fixture("google", "error_rate_limit")),
            httpx.Response(200, json=fixture("google", "userinfo")),
        ]
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 200, page.text


async def test_403_daily_limit_is_a_usage_cap(database_url: str, servers: Servers) -> None:
    """403 dailyLimitExceeded is not retried: 429 upstream-rate-limited with Retry-After."""
    stand, connection = await _linked(servers, database_url)
    route = stand.router.get(stand.url("api_base_url") + "/oauth2/v3/userinfo").respond(
        403, json=fixture("google", "error_daily_limit")
    )

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 429
    assert page.json()["type"].endswith("/upstream-rate-limited")
    assert route.call_count == 1


async def test_disconnect_revokes_the_refresh_token(database_url: str, servers: Servers) -> None:
    """DELETE posts the refresh token to Google's revocation endpoint."""
    stand, connection = await _linked(servers, database_url)
    revoke = stand.router.post(stand.url("revoke_url")).respond(200)

    async with stand.api() as api:
        response = await api.delete(f"/v1/connections/{connection['id']}")

    assert response.status_code in (200, 204), response.text
    assert any(b"token=1%2F%2Ffirst-refresh" in call.request.content for call in revoke.calls)


def test_scopes_are_read_only() -> None:
    """Every Google scope requested is a sign-in or a read-only scope."""
    assert all(
        scope in {"openid", "email", "profile"} or scope.endswith(".readonly")
        for scope in PROVIDER.oauth.scopes
    )
