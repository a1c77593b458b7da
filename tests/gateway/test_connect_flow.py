"""The connect flow end to end: gateway and sandbox over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from gateway.storage import connections, create_engine
from gateway.vault import KeyRing, token_row
from tests.gateway.conftest import CUSTOMER, Stack


async def _connections(stack: Stack) -> list[dict[str, object]]:
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    assert response.status_code == 200
    return list(response.json()["connections"])


async def test_linking_creates_an_active_connection_with_sealed_tokens(stack: Stack) -> None:
    """A full code + PKCE + OIDC round trip ends in one active connection, tokens encrypted."""
    result = await stack.link()

    assert result.status_code == 200, result.text
    assert "Account linked" in result.text
    assert result.headers["referrer-policy"] == "no-referrer"
    [listed] = await _connections(stack)
    assert listed["status"] == "active"
    assert listed["provider"] == "sandbox"
    assert "access_token" not in str(listed)

    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
    finally:
        await engine.dispose()
    vault = KeyRing.parse(stack.settings.vault_keys)
    assert row["access_token"].startswith("v1.t1.")
    access = vault.open(row["access_token"], row=token_row(row["id"], "access_token"))
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        me = await sandbox.get("/api/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200, "the sealed token is the live token the provider issued"


async def test_linking_the_same_account_twice_updates_instead_of_duplicating(stack: Stack) -> None:
    """Reconnecting an account keeps one connection keyed by (provider, issuer, subject)."""
    assert (await stack.link()).status_code == 200
    second = await stack.link()

    assert "linked again" in second.text
    assert len(await _connections(stack)) == 1


async def test_replayed_state_is_rejected(stack: Stack) -> None:
    """A callback URL used twice links nothing the second time (state is single use)."""
    async with stack.browser() as browser:
        answer = await stack.begin(browser, await stack.connect_session())
        callback = answer.headers["location"]
        assert (await browser.get(callback)).status_code == 200
        replay = await browser.get(callback)

    assert replay.status_code == 400
    assert "already used" in replay.text


async def test_state_from_another_browser_session_is_rejected(stack: Stack) -> None:
    """A callback carrying a state started in another browser is refused (RFC 9700 §4.7.1)."""
    async with stack.browser() as victim, stack.browser() as attacker:
        answer = await stack.begin(attacker, await stack.connect_session())
        await stack.begin(victim, await stack.connect_session())
        forced = await victim.get(answer.headers["location"])

    assert forced.status_code == 400
    assert "another browser" in forced.text
    assert await _connections(stack) == []


async def test_unknown_state_is_rejected(stack: Stack) -> None:
    """A callback with a made-up state links nothing."""
    async with stack.browser() as browser:
        response = await browser.get(f"{stack.gateway.url}/oauth/callback?code=x&state=forged")

    assert response.status_code == 400
    assert "unknown" in response.text
    assert await _connections(stack) == []


async def test_expired_state_is_rejected(stack: Stack) -> None:
    """A round trip slower than the state's lifetime links nothing."""
    engine = create_engine(stack.settings.database_url)
    async with stack.browser() as browser:
        answer = await stack.begin(browser, await stack.connect_session())
        from datetime import UTC, datetime, timedelta

        from gateway.storage import oauth_states, writer

        async with writer(engine).begin() as conn:
            await conn.execute(
                oauth_states.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        await engine.dispose()
        response = await browser.get(answer.headers["location"])

    assert response.status_code == 400
    assert "expired" in response.text
    assert await _connections(stack) == []


async def test_wrong_pkce_verifier_is_rejected(stack: Stack) -> None:
    """The provider refuses the code when the verifier does not match its challenge."""
    engine = create_engine(stack.settings.database_url)
    async with stack.browser() as browser:
        answer = await stack.begin(browser, await stack.connect_session())
        from gateway.storage import oauth_states, writer

        vault = KeyRing.parse(stack.settings.vault_keys)
        async with writer(engine).begin() as conn:
            row = (await conn.execute(select(oauth_states))).mappings().one()
            wrong = vault.seal("x" * 64, row="linkgate/oauth_state/" + row["state_hash"])
            await conn.execute(oauth_states.update().values(code_verifier=wrong))
        await engine.dispose()
        response = await browser.get(answer.headers["location"])

    assert response.status_code == 400
    assert "invalid_grant" in response.text
    assert await _connections(stack) == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("wrong_aud", "aud"),
        ("wrong_iss", "iss"),
        ("wrong_nonce", "nonce"),
        ("expired", "expired"),
        ("bad_signature", "signature"),
        ("alg_none", "signature"),
    ],
)
async def test_bad_id_token_is_rejected(stack: Stack, fault: str, reason: str) -> None:
    """Each broken ID token (OIDC Core §3.1.3.7) is refused with its reason, nothing linked."""
    await stack.sandbox_faults(id_token=fault)

    response = await stack.link()

    assert response.status_code == 400
    assert "ID token was rejected" in response.text
    assert reason in response.text
    assert await _connections(stack) == []


@pytest.mark.parametrize("fault", ["wrong_iss", "missing_iss"])
async def test_mismatching_iss_parameter_is_rejected(stack: Stack, fault: str) -> None:
    """RFC 9207: a wrong or missing iss in the authorization response is refused."""
    await stack.sandbox_faults(authorize=fault)

    response = await stack.link()

    assert response.status_code == 400
    assert "issuer" in response.text
    assert await _connections(stack) == []


async def test_return_url_receives_the_new_connection(stack: Stack) -> None:
    """With an allow-listed return_url the admin lands back on the platform."""
    async with stack.browser() as browser:
        session = await stack.connect_session(return_url="https://crm.example/after-connect")
        answer = await stack.begin(browser, session)
        response = await browser.get(answer.headers["location"])

    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.netloc == "crm.example"
    assert parse_qs(target.query)["status"] == ["linked"]


async def test_return_url_off_the_allow_list_is_refused(stack: Stack) -> None:
    """A return_url not on the allow-list is a 400 problem, not an open redirect."""
    async with stack.api() as api:
        response = await api.post(
            "/v1/connect-sessions",
            json={"customer_id": CUSTOMER, "return_url": "https://evil.example/"},
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/invalid-parameter")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "return_url",
    [
        "https://crm.example/after-connect/../admin",
        "https://crm.example/after-connect/%2e%2E/admin",
        "https://crm.example/after-connect/.%2e/admin",
        "https://crm.example/after-connect/..\\admin",  # a backslash is a slash to a browser
        "https://crm.example/after-connect/.\t./admin",  # a browser drops the tab
    ],
)
async def test_a_return_url_leaving_the_allowed_path_is_refused(
    stack: Stack, return_url: str
) -> None:
    """Dot segments a browser resolves would land outside the allow-listed path: 400."""
    async with stack.api() as api:
        response = await api.post(
            "/v1/connect-sessions", json={"customer_id": CUSTOMER, "return_url": return_url}
        )

    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/invalid-parameter")
