"""Rectification, end to end on the sandbox: the correction is recorded, the sources are named."""

from __future__ import annotations

from gateway.errors import PROBLEM_BASE
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, file, finished

PURPOSE = "essential.service"
CORRECTION = "Surname is spelled Doe-Smith since March; the handle is unchanged."


async def _read_conversations(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        read = await api.get(
            f"/v1/connections/{connection['id']}/records/conversations",
            params={"purpose": PURPOSE},
        )
    assert read.status_code == 200, read.text
    return str(connection["id"])


async def test_rectification_records_the_correction_and_names_where_to_correct_it(
    stack: Stack,
) -> None:
    """The gateway keeps no copy to correct; it records the note and lists the sources."""
    connection_id = await _read_conversations(stack)
    filed = await file(
        stack,
        kind="rectification",
        subject=JANE_SUBJECT,
        verified_by="privacy@acme.example",
        note=CORRECTION,
    )
    assert filed.status_code == 201, filed.text
    done = await finished(stack, filed.json()["id"])
    assert done["status"] == "completed", done
    steps = done["result"]["steps"]
    assert steps["record_correction"]["recorded"] is True
    assert steps["record_correction"]["applied_to_stored"] == 0
    sources = done["result"]["sources_to_correct"]
    assert sources == steps["find_sources"]["sources_to_correct"]
    assert [(s["provider"], s["connection_id"], s["resource"]) for s in sources] == [
        ("sandbox", connection_id, "conversations")
    ]
    assert sources[0]["records"] >= 1


async def test_a_rectification_without_its_correction_is_refused_when_filed(stack: Stack) -> None:
    """No note, no request: the problem names the parameter and nothing is filed."""
    refused = await file(
        stack, kind="rectification", subject=JANE_SUBJECT, verified_by="privacy@acme.example"
    )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == PROBLEM_BASE + "invalid-parameter"
    assert refused.json()["parameter"] == "note"
    async with stack.api() as api:
        listed = await api.get("/v1/processor-requests", params={"customer_id": CUSTOMER})
    assert listed.json()["requests"] == []
