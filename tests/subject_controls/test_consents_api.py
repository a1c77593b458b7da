"""The consent and suppression endpoints over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit import SubjectHasher
from gateway.errors import PROBLEM_BASE
from gateway.storage import audit_tables, create_engine
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack

MARKETING = "marketing.communications"
JANE = {
    "emails": ["Jane@Customer.Example"],
    "handles": [{"provider": "sandbox", "handle": "@JaneDoe"}],
    "provider_user_ids": [{"provider": "sandbox", "id": "usr_jane"}],
}
JANE_IDENTIFIERS = ("email:jane@customer.example", "handle:sandbox:janedoe",
                    "provider_user_id:sandbox:usr_jane")  # fmt: skip


def _path(customer: str = CUSTOMER, what: str = "consents") -> str:
    return f"/v1/customers/{customer}/{what}"


async def _put(stack: Stack, body: dict[str, Any], key: str | None = None,
               customer: str = CUSTOMER) -> httpx.Response:  # fmt: skip
    async with stack.api(key) as api:
        return await api.put(_path(customer), json=body)


async def _delete(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    async with stack.api() as api:
        return await api.request("DELETE", _path(), json=body)


async def _audit_rows(stack: Stack) -> list[dict[str, Any]]:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(audit_tables.events).order_by(audit_tables.events.c.seq)
            )
            return [dict(row) for row in rows.mappings()]
    finally:
        await engine.dispose()


async def test_recording_consent_answers_without_identifiers(stack: Stack) -> None:
    """PUT records the consent and answers with its id and a count, not the subject."""
    response = await _put(stack, {"subject": JANE, "purpose": MARKETING, "evidence": "form v2"})
    assert response.status_code == 200, response.text
    consent = response.json()["consent"]
    assert (
        consent["customer_id"], consent["purpose"], consent["identifiers"]
    ) == (CUSTOMER, MARKETING, 3)  # fmt: skip
    assert "customer.example" not in response.text.lower()


async def test_another_customers_consents_are_forbidden(stack: Stack) -> None:
    """A service entitled to globex cannot record consent for acme: 403 problem."""
    response = await _put(stack, {"subject": JANE, "purpose": MARKETING}, key=stack.other_key)
    assert response.status_code == 403
    assert response.json()["type"] == PROBLEM_BASE + "forbidden"
    async with stack.api(stack.other_key) as api:
        listed = await api.get(_path(CUSTOMER, "suppressions"))
    assert listed.status_code == 403


async def test_a_missing_key_is_unauthenticated(stack: Stack) -> None:
    """No service key: 401."""
    async with httpx.AsyncClient(base_url=stack.gateway.url) as anonymous:
        response = await anonymous.put(_path(), json={"subject": JANE, "purpose": MARKETING})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("subject", "parameter"),
    [
        ({"emails": ["not-an-email"]}, "subject.emails[0]"),
        ({"phones": ["12"]}, "subject.phones[0]"),
        ({"handles": ["@JaneDoe"]}, "subject.handles[0]"),
        ({"provider_user_ids": [{"provider": "Bad Name", "id": "1"}]},
         "subject.provider_user_ids[0]"),
        ({}, "subject"),
        ({"names": ["Jane"]}, "subject"),
        ("jane@customer.example", "subject"),
    ],
)  # fmt: skip
async def test_a_malformed_subject_is_a_400_problem(
    stack: Stack, subject: Any, parameter: str
) -> None:
    """Bad subjects get invalid-parameter naming the position, never echoing the value."""
    response = await _put(stack, {"subject": subject, "purpose": MARKETING})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (PROBLEM_BASE + "invalid-parameter", parameter) == (
        problem["type"], problem["parameter"]
    )  # fmt: skip
    assert "not-an-email" not in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"subject": JANE, "purpose": "essential.service"},
        {"subject": JANE},
        {"subject": JANE, "purpose": MARKETING, "suppress": True},
        {"subject": JANE, "purpose": MARKETING, "evidence": "said yes at jane@customer.example"},
    ],
)
async def test_bad_consent_bodies_are_400_problems(stack: Stack, body: dict[str, Any]) -> None:
    """A purpose consent cannot make lawful, unknown members, identifiers in evidence: 400."""
    response = await _put(stack, body)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == PROBLEM_BASE + "invalid-parameter"


async def test_withdrawal_withdraws_and_is_idempotent(stack: Stack) -> None:
    """DELETE ends the consent; a second DELETE finds nothing left to withdraw."""
    recorded = (await _put(stack, {"subject": JANE, "purpose": MARKETING})).json()["consent"]
    first = await _delete(stack, {"subject": {"emails": ["jane@customer.example"]}})
    second = await _delete(stack, {"subject": {"emails": ["jane@customer.example"]}})
    assert (200, [recorded["id"]]) == (first.status_code, first.json()["withdrawn"])
    assert (second.status_code, second.json()["withdrawn"]) == (200, [])


async def test_changes_are_audited_with_keyed_hashes_only(stack: Stack) -> None:
    """consent.recorded and consent.withdrawn hold the subject's keyed hashes, no identifier."""
    await _put(stack, {"subject": JANE, "purpose": MARKETING, "evidence": "double opt-in"})
    await _delete(stack, {"subject": JANE, "purpose": MARKETING})
    rows = [r for r in await _audit_rows(stack) if r["action"].startswith("consent.")]
    assert [row["action"] for row in rows] == ["consent.recorded", "consent.withdrawn"]
    hasher = SubjectHasher(stack.settings.secret_key.encode())
    expected = sorted(hasher.hash(CUSTOMER, identifier) for identifier in JANE_IDENTIFIERS)
    for row in rows:
        assert expected == json.loads(row["content"])["subjects"]
        assert (row["customer_id"], json.loads(row["content"])["purpose"]) == (CUSTOMER, MARKETING)
        every_column = repr(row).lower()
        for clear in ("jane@customer.example", "janedoe", "usr_jane", "double opt-in"):
            assert clear not in every_column


async def test_suppression_list_of_a_fresh_customer_is_empty(stack: Stack) -> None:
    """GET suppressions answers counts per kind, zero when none."""
    async with stack.api() as api:
        response = await api.get(_path(CUSTOMER, "suppressions"))
    assert response.status_code == 200
    assert (response.json()["total"], response.json()["suppressions"]) == (0, [])


async def test_other_customer_path_is_forbidden_even_for_its_own_data(stack: Stack) -> None:
    """The acme service cannot read globex's suppression list."""
    async with stack.api() as api:
        response = await api.get(_path(OTHER_CUSTOMER, "suppressions"))
    assert response.status_code == 403
