"""The authorization endpoint: request validation, the consent page, approve and deny."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import pytest

from providers.sandbox.settings import DEFAULT_REDIRECT_URI, SandboxSettings

if TYPE_CHECKING:
    from conftest import Flow


@pytest.fixture
def consent_client(flow_for: Callable[..., Flow]) -> httpx.AsyncClient:
    """A client of a sandbox that shows its consent page instead of auto-approving."""
    return flow_for(auto_approve=False).client


async def test_auto_approve_redirects_with_code_state_and_iss(
    flow: Flow, settings: SandboxSettings
) -> None:
    """With auto_approve, /authorize answers with code, the same state and iss (RFC 9207)."""
    auth = await flow.authorize()
    assert auth.query["state"] == auth.state
    assert auth.query["iss"] == settings.issuer
    assert auth.code


async def test_redirect_keeps_the_registered_query(
    flow: Flow, settings: SandboxSettings, flow_for: Callable[..., Flow]
) -> None:
    """A redirect URI with its own query keeps it, and the response parameters are added."""
    uri = "http://app.test/cb?tenant=7"
    registration = replace(settings.clients["linkgate-demo"], redirect_uris=(uri,))
    other = flow_for(clients={"c": registration})
    params = flow.authorize_params(client_id="c", redirect_uri=uri)
    params.pop("_verifier")
    response = await other.client.get("/authorize", params=params)
    assert response.headers["location"].startswith("http://app.test/cb?tenant=7&code=")


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"client_id": "stranger"}, "Unknown client_id"),
        ({"redirect_uri": "http://evil.test/cb"}, "redirect_uri is not registered"),
        ({"redirect_uri": DEFAULT_REDIRECT_URI + "/"}, "redirect_uri is not registered"),
        ({"redirect_uri": None}, "redirect_uri is not registered"),
    ],
)
async def test_bad_client_or_redirect_uri_shows_an_error_page_without_redirect(
    flow: Flow, client: httpx.AsyncClient, override: dict[str, str | None], problem: str
) -> None:
    """RFC 6749 §4.1.2.1: an unknown client or unregistered redirect URI is never redirected to."""
    params = flow.authorize_params(**override)
    params.pop("_verifier")
    response = await client.get("/authorize", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert problem in response.text


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"scope": "openid posts.write"}, "invalid_scope"),
        ({"scope": None}, "invalid_scope"),
    ],
)
async def test_invalid_requests_redirect_back_with_the_error_and_state(
    flow: Flow, client: httpx.AsyncClient, override: dict[str, str | None], error: str
) -> None:
    """Other invalid requests go back to the client as error, state and iss."""
    params = flow.authorize_params(**override)
    params.pop("_verifier")
    response = await client.get("/authorize", params=params)
    assert response.status_code == 302
    query = flow.redirect_query(response)
    assert query["error"] == error
    assert query["state"] == params["state"]
    assert "code" not in query


async def test_missing_state_is_refused(flow: Flow, client: httpx.AsyncClient) -> None:
    """A request without state is refused: the client would have no CSRF protection."""
    params = flow.authorize_params(state=None)
    params.pop("_verifier")
    response = await client.get("/authorize", params=params)
    assert flow.redirect_query(response)["error"] == "invalid_request"


async def test_duplicate_parameters_are_refused(flow: Flow, client: httpx.AsyncClient) -> None:
    """RFC 6749 §3.1: a parameter sent twice is an invalid request."""
    params = [*list(flow.authorize_params().items()), ("scope", "openid")]
    response = await client.get("/authorize", params=params)
    assert response.status_code == 400


async def test_login_hint_picks_the_demo_user(flow: Flow, client: httpx.AsyncClient) -> None:
    """With auto_approve, login_hint naming a demo user signs in as that user."""
    tokens = await flow.tokens(login_hint="ben@bensbikes.example")
    me = (await flow.api("/api/me", tokens["access_token"])).json()
    assert me["id"] == "usr_ben"


async def test_consent_page_lists_users_and_scopes_in_plain_words(
    flow: Flow, consent_client: httpx.AsyncClient
) -> None:
    """The consent page names the client, the demo users and each scope in plain words."""
    params = flow.authorize_params()
    params.pop("_verifier")
    response = await consent_client.get("/authorize", params=params)
    assert response.status_code == 200
    page = response.text
    assert '<html lang="en">' in page
    assert "linkgate-demo" in page
    assert "Ada Baker" in page
    assert "Ben Rider" in page
    assert "Read the messages people send to your page" in page
    assert 'value="approve"' in page
    assert 'value="deny"' in page
    assert response.headers["x-frame-options"] == "DENY"
    assert "http" not in re.sub(r'action="[^"]*"', "", page).replace("http-equiv", "")


async def _consent_form(flow: Flow, client: httpx.AsyncClient) -> tuple[str, str]:
    params = flow.authorize_params()
    params.pop("_verifier")
    page = (await client.get("/authorize", params=params)).text
    match = re.search(r'name="request_id" value="([^"]+)"', page)
    assert match is not None
    return match.group(1), params["state"]


async def test_deny_redirects_with_access_denied_and_state(
    flow: Flow, consent_client: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    """Deny on the consent page sends error=access_denied with the state and iss."""
    request_id, state = await _consent_form(flow, consent_client)
    response = await consent_client.post(
        "/authorize/decision", data={"request_id": request_id, "decision": "deny"}
    )
    query = flow.redirect_query(response)
    assert query == {"error": "access_denied", "error_description": query["error_description"],
                     "state": state, "iss": settings.issuer}  # fmt: skip


async def test_approve_redirects_with_a_code_for_the_chosen_user(
    flow: Flow, consent_client: httpx.AsyncClient
) -> None:
    """Approve on the consent page sends a code and state; the form cannot be replayed."""
    request_id, state = await _consent_form(flow, consent_client)
    form = {"request_id": request_id, "decision": "approve", "user_id": "usr_ben"}
    response = await consent_client.post("/authorize/decision", data=form)
    replay = await consent_client.post("/authorize/decision", data=form)
    query = flow.redirect_query(response)
    assert query["state"] == state
    assert query["code"]
    assert replay.status_code == 400
