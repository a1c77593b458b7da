"""Service keys at the API: missing, wrong, revoked, not entitled."""

from __future__ import annotations

import httpx
import pytest

from gateway.callers import CallerKind, list_callers, revoke_caller
from gateway.storage import create_engine
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack


def _assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + kind)
    assert body["status"] == status


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong-scheme", "empty"],
)
async def test_missing_key_is_401(stack: Stack, headers: dict[str, str]) -> None:
    """No usable bearer credential: 401 problem+json with a WWW-Authenticate challenge."""
    async with httpx.AsyncClient(base_url=stack.gateway.url) as client:
        response = await client.get(
            "/v1/connections", params={"customer_id": CUSTOMER}, headers=headers
        )

    _assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_two_authorization_headers_are_a_bad_request(stack: Stack) -> None:
    """Which of two credentials counts is ambiguous (a proxy may read the other): 400."""
    key = f"Bearer {stack.service_key}"
    async with httpx.AsyncClient(base_url=stack.gateway.url) as client:
        answers = [
            await client.get(
                "/v1/connections",
                params={"customer_id": CUSTOMER},
                headers=[("Authorization", first), ("Authorization", second)],
            )
            for first, second in ((key, "Bearer lgk_other"), ("Bearer lgk_other", key))
        ]

    for answer in answers:
        _assert_problem(answer, 400, "bad-request")
        assert "Authorization" in answer.json()["detail"]


async def test_wrong_key_is_401(stack: Stack) -> None:
    """A well-formed but unknown key is refused."""
    async with stack.api("lgk_" + "x" * 43) as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})

    _assert_problem(response, 401, "unauthenticated")


async def test_revoked_key_is_401(stack: Stack) -> None:
    """A revoked key stops working at once."""
    engine = create_engine(stack.settings.database_url)
    try:
        [crm] = [c for c in await list_callers(engine, CallerKind.SERVICE) if c.name == "crm"]
        await revoke_caller(engine, crm.id)
    finally:
        await engine.dispose()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})

    _assert_problem(response, 401, "unauthenticated")
    assert "revoked" in response.json()["detail"]


async def test_key_of_another_customer_is_403(stack: Stack) -> None:
    """A service not entitled to the customer gets 403 and no data."""
    async with stack.api(stack.other_key) as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
        own = await api.get("/v1/connections", params={"customer_id": OTHER_CUSTOMER})

    _assert_problem(response, 403, "forbidden")
    assert own.status_code == 200


async def test_connection_of_another_customer_is_404(stack: Stack) -> None:
    """Reading or deleting another customer's connection looks exactly like a missing one."""
    await stack.link()
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
    async with stack.api(stack.other_key) as api:
        read = await api.get(f"/v1/connections/{connection['id']}")
        delete = await api.delete(f"/v1/connections/{connection['id']}")
        missing = await api.get("/v1/connections/con_does_not_exist")

    _assert_problem(read, 404, "not-found")
    _assert_problem(delete, 404, "not-found")
    assert read.json()["title"] == missing.json()["title"]
    async with stack.api() as api:
        still = await api.get(f"/v1/connections/{connection['id']}")
    assert still.json()["status"] == "active"


async def test_connect_session_for_another_customer_is_403(stack: Stack) -> None:
    """A service cannot open a connect portal for a customer it is not entitled to."""
    async with stack.api(stack.other_key) as api:
        response = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})

    _assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"customer_id": 5}', "application/json"),
        (b"customer_id=acme", "application/x-www-form-urlencoded"),
    ],
)
async def test_bad_connect_session_body_is_400(
    stack: Stack, body: bytes, content_type: str
) -> None:
    """Malformed input is a clear 400 problem, never a 500."""
    async with stack.api() as api:
        response = await api.post(
            "/v1/connect-sessions", content=body, headers={"Content-Type": content_type}
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
