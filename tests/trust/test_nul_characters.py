"""A NUL character (U+0000) wherever a caller can put one: refused at the edge, on both databases.

PostgreSQL's text cannot hold a NUL; before these checks it refused the
statement, and the gateway answered 503 database-unavailable with Retry-After
(on the records path too), so a client retried a request that could never
succeed and the operator saw an outage that was not there. SQLite stored it.
"""

from __future__ import annotations

import httpx

from gateway.callers import CallerKind
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, new_key


def _invalid(answer: httpx.Response) -> None:
    assert (answer.status_code, answer.headers["content-type"]) == (
        400,
        "application/problem+json",
    ), answer.text
    assert answer.json()["type"].endswith("/invalid-parameter")


async def test_a_nul_in_the_url_is_a_bad_request(stack: Stack) -> None:
    """In a path segment or a query value, on every kind of route: 400, not a 503 or a 404."""
    auditor = await new_key(stack, CallerKind.AUDITOR, customers=[CUSTOMER])
    async with stack.api() as api, stack.api(auditor) as audit:
        answers = [
            await api.get("/v1/connections/con_x%00"),
            await api.delete("/v1/connections/con_x%00"),
            await api.get("/v1/connections/con_x%00/records/posts?purpose=essential.service"),
            await api.get("/v1/connections", params={"customer_id": f"{CUSTOMER}\x00"}),
            await audit.get("/v1/processor-requests/prq_x%00"),
            await audit.get("/v1/audit/events", params={"customer_id": CUSTOMER, "caller": "\x00"}),
        ]
        served = await api.get("/v1/connections", params={"customer_id": CUSTOMER})

    for answer in answers:
        _invalid(answer)
    assert served.status_code == 200


async def test_a_nul_in_a_json_body_is_a_bad_request_and_nothing_is_filed(stack: Stack) -> None:
    """A NUL in any string of a JSON body (value or key) is refused before anything is stored."""
    bodies = [
        {"customer_id": CUSTOMER, "kind": "access", "subject": JANE_SUBJECT, "note": "see\x00"},
        {"customer_id": CUSTOMER, "kind": "access", "subject": JANE_SUBJECT, "verified_by": "\x00"},
        {"customer_id": CUSTOMER, "kind": "access", "subject": JANE_SUBJECT, "x\x00": 1},
    ]
    async with stack.api() as api:
        answers = [await api.post("/v1/processor-requests", json=body) for body in bodies]
        listed = await api.get("/v1/processor-requests", params={"customer_id": CUSTOMER})

    for answer in answers:
        _invalid(answer)
    assert listed.json()["requests"] == []


async def test_a_json_body_naming_the_nul_escape_as_text_is_accepted(stack: Stack) -> None:
    """An escaped backslash before u0000 is six characters of text, not a NUL: filed."""
    body = {
        "customer_id": CUSTOMER,
        "kind": "access",
        "subject": JANE_SUBJECT,
        "verified_by": "ticket \\u0000",
    }
    async with stack.api() as api:
        answer = await api.post("/v1/processor-requests", json=body)

    assert answer.status_code == 201, answer.text
