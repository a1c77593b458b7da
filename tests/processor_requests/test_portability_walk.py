"""Portability walks child resources per parent: the sandbox's comments per post, bounded.

Live gateway + live sandbox, SQLite and PostgreSQL. What the bundle holds is
compared with what the records API releases for the same purpose when a
caller names each post itself.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.callers import CallerKind
from gateway.processor_requests import connection_walk
from providers.sandbox.demo_data import JANE, NORTHWIND_COMMENTS
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, file, finished, new_key

LEGAL = "essential.legal_obligation"
JANE_ID = f"sandbox:{JANE['id']}"


async def _connection(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    return str(response.json()["connections"][0]["id"])


async def _released(
    api: httpx.AsyncClient, connection_id: str, resource: str, **params: str
) -> list[dict[str, Any]]:
    """Every page of a resource as the records API releases it for the legal purpose."""
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"purpose": LEGAL, **params, **({"cursor": cursor} if cursor else {})}
        page = await api.get(f"/v1/connections/{connection_id}/records/{resource}", params=query)
        assert page.status_code == 200, page.text
        records += page.json()["records"]
        cursor = page.json().get("next_cursor")
        if not cursor:
            return records


def _about_jane(record: dict[str, Any]) -> bool:
    return any(i["value"] == JANE_ID for s in record["subjects"] for i in s["identifiers"]) or any(
        i["value"] == str(JANE["email"]).lower()
        for s in record["subjects"]
        for i in s["identifiers"]
    )


async def _portability(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """File and finish a portability request about Jane: (its manifest, records.json)."""
    filed = await file(stack, kind="portability", subject=JANE_SUBJECT, verified_by="dpo@acme")
    done = await finished(stack, filed.json()["id"])
    assert done["status"] == "completed", done
    async with stack.api() as api:
        result = (await api.get(f"/v1/processor-requests/{done['id']}/result")).json()
    links = {f["name"]: f["url"] for f in result["files"]}
    async with httpx.AsyncClient(base_url=stack.gateway.url) as anonymous:
        bundle = json.loads((await anonymous.get(links["records.json"])).content)
    return result["result"]["manifest"], bundle


async def test_a_subjects_comments_reach_the_bundle_through_each_post(stack: Stack) -> None:
    """Jane's comments on the page's posts are in the bundle, exactly as released per post."""
    connection_id = await _connection(stack)
    key = await new_key(stack, CallerKind.SERVICE, customers=[CUSTOMER], purposes=(LEGAL,))
    async with stack.api(key) as api:
        posts = await _released(api, connection_id, "posts")
        expected = {
            c["id"]
            for post in posts
            for c in await _released(api, connection_id, "comments", post_id=post["id"])
            if _about_jane(c)
        }
    # The demo data has Jane commenting on two posts; both reach the caller naming them.
    assert expected == {"c_2001", "c_2006"}

    manifest, bundle = await _portability(stack)
    comments = {r["id"] for r in bundle["records"] if r["resource"] == "comments"}
    assert comments == expected
    assert [n for n in manifest["not_fetched"] if n.get("resource") == "comments"] == []
    assert {"provider": "sandbox", "connection_id": connection_id, "resource": "comments",
            "records": 2} in manifest["sources"]  # fmt: skip
    assert all(_about_jane(r) for r in bundle["records"])


async def test_the_parent_bound_cuts_the_walk_and_names_what_it_left_out(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With at most one post walked, the others are named in not_fetched, their comments absent."""
    monkeypatch.setattr(connection_walk, "MAX_PARENTS", 1)
    connection_id = await _connection(stack)
    key = await new_key(stack, CallerKind.SERVICE, customers=[CUSTOMER], purposes=(LEGAL,))
    async with stack.api(key) as api:
        post_ids = [p["id"] for p in await _released(api, connection_id, "posts")]
    assert len(post_ids) > 1

    manifest, bundle = await _portability(stack)
    [cut] = [n for n in manifest["not_fetched"] if n.get("resource") == "comments"]
    assert cut["connection_id"] == connection_id
    assert cut["reason"] == "bounded at 1 parents"
    assert cut["parents_walked"] == 1
    assert cut["parents_left_out"] == len(post_ids) - 1
    left_out = [p["post_id"] for p in cut["left_out"]]
    assert sorted(left_out) == sorted(post_ids[1:])

    walked = post_ids[0]
    comments = {r["id"] for r in bundle["records"] if r["resource"] == "comments"}
    jane_on_walked = {
        c["id"] for c in NORTHWIND_COMMENTS.get(walked, ()) if c["from"]["id"] == JANE["id"]
    }
    assert comments <= jane_on_walked  # nothing from a post the bound cut off
    for post_id in left_out:
        for comment in NORTHWIND_COMMENTS.get(post_id, ()):
            assert comment["id"] not in comments
