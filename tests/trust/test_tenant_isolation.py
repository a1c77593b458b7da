"""Tenant isolation: every endpoint that takes a customer, connection, event or request id,
tried with another customer's credential.

Expected, for each row: 404 (where an id was named, so existence does not
leak) or 403 (where the customer was named), as problem+json; a
``caller.refused`` event in the victim customer's audit log; nothing changed.

CLI commands that take ``--customer`` (``audit verify``, ``audit export``)
are operator commands run with database access, not tenant credentials, so
they are outside this matrix.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, create_engine
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack

SUBJECT = {"emails": ["jane@customer.example"]}

# (credential, method, path template, body, expected status)
MATRIX: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
    ("service", "POST", "/v1/connect-sessions", {"customer_id": CUSTOMER}, 403),
    ("service", "GET", "/v1/connections?customer_id={customer}", None, 403),
    ("service", "GET", "/v1/connections/{connection}", None, 404),
    ("service", "DELETE", "/v1/connections/{connection}", None, 404),
    ("service", "GET", "/v1/connections/{connection}/records/posts?purpose=essential.service",
     None, 404),
    ("service", "PUT", "/v1/customers/{customer}/consents",
     {"subject": SUBJECT, "purpose": "marketing.communications"}, 403),
    ("service", "DELETE", "/v1/customers/{customer}/consents", {"subject": SUBJECT}, 403),
    ("service", "GET", "/v1/customers/{customer}/suppressions", None, 403),
    ("service", "POST", "/v1/processor-requests",
     {"customer_id": CUSTOMER, "kind": "erasure", "subject": SUBJECT, "verified_by": "x"}, 403),
    ("service", "GET", "/v1/processor-requests?customer_id={customer}", None, 403),
    ("service", "GET", "/v1/processor-requests/{request}", None, 404),
    ("service", "POST", "/v1/processor-requests/{request}/verify", {"verified_by": "x"}, 404),
    ("service", "GET", "/v1/processor-requests/{request}/result", None, 404),
    ("auditor", "GET", "/v1/audit/events?customer_id={customer}", None, 403),
    ("auditor", "GET", "/v1/audit/events/{customer}/1", None, 404),
    ("auditor", "GET", "/v1/audit/verify?customer_id={customer}", None, 403),
    ("auditor", "GET", "/v1/audit/disclosures?customer_id={customer}", None, 403),
]  # fmt: skip


async def _refusals(stack: Stack) -> int:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            events = audit_tables.events
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            events.c.customer_id == CUSTOMER, events.c.action == "caller.refused"
                        )
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def victim(stack: Stack) -> dict[str, str]:
    """Acme's linked connection and one of its processor requests; globex's auditor key."""
    await stack.link()
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        filed = await api.post(
            "/v1/processor-requests",
            json={"customer_id": CUSTOMER, "kind": "access", "subject": SUBJECT},
        )
    assert filed.status_code in (200, 201, 202), filed.text
    engine = create_engine(stack.settings.database_url)
    try:
        _, auditor = await create_caller(
            engine, kind=CallerKind.AUDITOR, name="globex-auditor", customers=[OTHER_CUSTOMER]
        )
    finally:
        await engine.dispose()
    return {
        "connection": connection["id"],
        "request": filed.json()["id"],
        "customer": CUSTOMER,
        "auditor_key": auditor,
    }


@pytest.mark.parametrize(
    ("credential", "method", "path", "body", "expected"),
    MATRIX,
    ids=[f"{m} {p.split('?')[0]}" for _, m, p, _, _ in MATRIX],
)
async def test_another_customers_credential_is_refused_audited_and_changes_nothing(
    stack: Stack,
    victim: dict[str, str],
    credential: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: int,
) -> None:
    """Globex's credential on Acme's objects: 403/404 problem, audited, nothing changed."""
    key = stack.other_key if credential == "service" else victim["auditor_key"]
    url = path.format(**victim)
    before = await _refusals(stack)
    async with stack.api(key) as api:
        state_before = await _acme_state(stack, victim)
        response = await api.request(method, url, json=body)
        state_after = await _acme_state(stack, victim)

    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if expected == 404:
        assert CUSTOMER not in response.json()["detail"], "a 404 does not name the owner"
    assert await _refusals(stack) == before + 1, "the refusal is in Acme's audit log"
    assert state_after == state_before, "nothing of Acme's changed"


async def _acme_state(stack: Stack, victim: dict[str, str]) -> dict[str, Any]:
    async with stack.api() as api:
        connection = (await api.get(f"/v1/connections/{victim['connection']}")).json()
        request = (await api.get(f"/v1/processor-requests/{victim['request']}")).json()
        suppressions = (await api.get(f"/v1/customers/{CUSTOMER}/suppressions")).json()
    return {
        "connection": (connection["status"], connection["updated_at"]),
        "request": request["kind"],
        "suppressions": suppressions,
    }


async def test_spoofed_customer_ids_in_headers_and_query_have_no_effect(
    stack: Stack, victim: dict[str, str]
) -> None:
    """A customer id in a header or a stray query parameter never widens what a key can see."""
    headers = {"X-Customer-Id": CUSTOMER, "X-Linkgate-Customer": CUSTOMER}
    async with stack.api(stack.other_key) as api:
        read = await api.get(f"/v1/connections/{victim['connection']}", headers=headers)
        session = await api.post(
            "/v1/connect-sessions",
            params={"customer_id": CUSTOMER},
            headers=headers,
            json={"customer_id": OTHER_CUSTOMER},
        )

    assert read.status_code == 404
    assert session.status_code == 201
    assert session.json()["customer_id"] == OTHER_CUSTOMER
    async with httpx.AsyncClient() as browser:
        portal = await browser.get(session.json()["connect_url"])
    assert f"Linked accounts of {OTHER_CUSTOMER}" in portal.text
    assert victim["connection"] not in portal.text
