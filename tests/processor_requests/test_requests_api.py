"""The processor-request API over real HTTP: portability, verification, refusals, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx

from gateway.callers import CallerKind
from gateway.errors import PROBLEM_BASE
from providers.sandbox.demo_data import JANE
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, file, finished, new_key

LEGAL = "essential.legal_obligation"


async def _connection(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    return str(response.json()["connections"][0]["id"])


def _mentions_jane(record: dict[str, Any]) -> bool:
    values = {i["value"] for s in record["subjects"] for i in s["identifiers"]}
    return f"sandbox:{JANE['id']}" in values or str(JANE["email"]).lower() in values


async def _allowed_for_jane(stack: Stack, connection_id: str) -> set[str]:
    """What the records API releases about Jane for the same purpose, page by page.

    Comments are asked for post by post, for every post released to the same caller.
    """
    key = await new_key(stack, CallerKind.SERVICE, customers=[CUSTOMER], purposes=(LEGAL,))
    found: set[str] = set()
    async with stack.api(key) as api:

        async def every_page(resource: str, **extra: str) -> list[dict[str, Any]]:
            records: list[dict[str, Any]] = []
            cursor = None
            while True:
                params = {"purpose": LEGAL, **extra, **({"cursor": cursor} if cursor else {})}
                page = (
                    await api.get(
                        f"/v1/connections/{connection_id}/records/{resource}", params=params
                    )
                ).json()
                records += page["records"]
                cursor = page["next_cursor"]
                if cursor is None:
                    return records

        for resource in ("profile", "posts", "conversations", "events"):
            records = await every_page(resource)
            found |= {f"{resource}/{r['id']}" for r in records if _mentions_jane(r)}
            if resource == "posts":
                for post in records:
                    comments = await every_page("comments", post_id=post["id"])
                    found |= {f"comments/{c['id']}" for c in comments if _mentions_jane(c)}
    return found


async def test_portability_bundle_matches_what_the_policies_release(stack: Stack) -> None:
    """The JSON bundle holds exactly the released records about Jane; checksums match."""
    connection_id = await _connection(stack)
    filed = await file(stack, kind="portability", subject=JANE_SUBJECT, verified_by="dpo@acme")
    done = await finished(stack, filed.json()["id"])
    assert done["status"] == "completed"
    async with stack.api() as api:
        result = (await api.get(f"/v1/processor-requests/{done['id']}/result")).json()
    links = {f["name"]: f for f in result["files"]}
    async with httpx.AsyncClient(base_url=stack.gateway.url) as anonymous:
        bundle = await anonymous.get(links["records.json"]["url"])
        table = await anonymous.get(links["records.csv"]["url"])
    assert bundle.status_code == 200
    records = json.loads(bundle.content)["records"]
    assert {f"{r['resource']}/{r['id']}" for r in records} == await _allowed_for_jane(
        stack, connection_id
    )
    manifest = result["result"]["manifest"]
    sums = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert sums["records.json"] == hashlib.sha256(bundle.content).hexdigest()
    assert sums["records.csv"] == hashlib.sha256(table.content).hexdigest()
    assert table.headers["content-type"].startswith("text/csv")
    assert manifest["records"] == len(records)


async def test_a_tampered_download_link_is_refused(stack: Stack) -> None:
    """A link whose token was changed opens nothing."""
    await _connection(stack)
    filed = await file(stack, kind="portability", subject=JANE_SUBJECT, verified_by="dpo@acme")
    await finished(stack, filed.json()["id"])
    async with stack.api() as api:
        result = (await api.get(f"/v1/processor-requests/{filed.json()['id']}/result")).json()
    url = result["files"][0]["url"]
    async with httpx.AsyncClient(base_url=stack.gateway.url) as anonymous:
        response = await anonymous.get(url[:-3] + "AAA")
    assert response.status_code == 403
    assert response.json()["type"] == PROBLEM_BASE + "download-link-invalid"


async def test_a_request_for_another_customers_subject_is_refused(stack: Stack) -> None:
    """globex's key cannot file for acme, nor see acme's request (404, no existence leak)."""
    refused = await file(stack, stack.other_key, kind="erasure", subject=JANE_SUBJECT)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    mine = await file(stack, kind="access", subject=JANE_SUBJECT)
    async with stack.api(stack.other_key) as api:
        hidden = await api.get(f"/v1/processor-requests/{mine.json()['id']}")
    assert hidden.status_code == 404


async def test_a_request_without_verified_by_waits_until_verified(stack: Stack) -> None:
    """Received stays received; after verify the runner completes it."""
    filed = await file(stack, kind="restriction", subject=JANE_SUBJECT, purposes=[LEGAL])
    assert filed.json()["status"] == "received"
    await asyncio.sleep(0.5)
    async with stack.api() as api:
        still = (await api.get(f"/v1/processor-requests/{filed.json()['id']}")).json()
        assert still["status"] == "received"
        verified = await api.post(
            f"/v1/processor-requests/{filed.json()['id']}/verify",
            json={"verified_by": "privacy@acme.example"},
        )
    assert verified.json()["verified_by"] == "privacy@acme.example"
    assert (await finished(stack, filed.json()["id"]))["status"] == "completed"


async def test_an_auditor_credential_files_and_follows(stack: Stack) -> None:
    """The privacy team's auditor credential may file and list the customer's requests."""
    auditor = await new_key(stack, CallerKind.AUDITOR, customers=[CUSTOMER])
    filed = await file(stack, auditor, kind="access", subject=JANE_SUBJECT, jurisdiction="ccpa")
    assert filed.status_code == 201
    body = filed.json()
    assert body["due_at"] == body["due_dates"]["ccpa"]
    async with stack.api(auditor) as api:
        listed = await api.get("/v1/processor-requests", params={"customer_id": CUSTOMER})
    assert [r["id"] for r in listed.json()["requests"]] == [body["id"]]


async def test_a_duplicate_of_an_open_request_is_a_conflict(stack: Stack) -> None:
    """The same kind for the same subject, while the first is open, is refused with its id."""
    first = await file(stack, kind="erasure", subject=JANE_SUBJECT)
    second = await file(stack, kind="erasure", subject=JANE_SUBJECT)
    assert second.status_code == 409
    assert second.json()["existing"] == first.json()["id"]


async def test_bad_input_is_problem_json(stack: Stack) -> None:
    """Unknown kinds, empty subjects, identifiers in notes and bad filters are 400s."""
    bodies = [
        {"kind": "sell", "subject": JANE_SUBJECT},
        {"kind": "access", "subject": {}},
        {"kind": "access", "subject": JANE_SUBJECT, "note": f"for {JANE['email']}"},
        {"kind": "access", "subject": JANE_SUBJECT, "purposes": [LEGAL]},
        {"kind": "erasure", "subject": JANE_SUBJECT, "jurisdiction": "mars"},
        {"kind": "erasure", "subject": JANE_SUBJECT, "lift": True},
    ]
    statuses = [(await file(stack, **body)).status_code for body in bodies]
    async with stack.api() as api:
        listed = await api.get("/v1/processor-requests", params={"overdue": "maybe"})
        verify = await api.post("/v1/processor-requests/prq_nope/verify", content=b"[")
    assert statuses == [400] * len(bodies)
    assert listed.status_code == 400
    assert listed.headers["content-type"] == "application/problem+json"
    assert verify.status_code == 404


async def test_a_kind_or_jurisdiction_of_the_wrong_json_type_is_a_bad_request(
    stack: Stack,
) -> None:
    """A list or object where a string belongs is a 400 naming the member, never a 500."""
    bodies = [
        {"kind": ["access"], "subject": JANE_SUBJECT},
        {"kind": {"access": True}, "subject": JANE_SUBJECT},
        {"kind": "access", "subject": JANE_SUBJECT, "jurisdiction": ["gdpr"]},
        {"kind": "access", "subject": JANE_SUBJECT, "jurisdiction": {"gdpr": 1}},
    ]
    answers = [await file(stack, **body) for body in bodies]
    assert [(a.status_code, a.headers["content-type"]) for a in answers] == [
        (400, "application/problem+json")
    ] * len(bodies)
    assert [a.json()["parameter"] for a in answers] == ["kind", "kind"] + ["jurisdiction"] * 2
    assert {a.json()["type"] for a in answers} == {PROBLEM_BASE + "invalid-parameter"}
