"""What an auditor reads in an access event's trace summary, over HTTP and in the console."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.audit_api.conftest import Keys
from tests.gateway.conftest import CUSTOMER, Stack

ROUTE = "/v1/connections/{connection_id}/records/{resource}"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def _connection(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    return str(response.json()["connections"][0]["id"])


async def _event_of(stack: Stack, auditor: str, trace_id: str) -> dict[str, Any]:
    """The records.read event whose trace id is ``trace_id``, as the audit API returns it."""
    async with stack.api(auditor) as api:
        found = await api.get(
            "/v1/audit/events", params={"customer_id": CUSTOMER, "action": "records.read"}
        )
        assert found.status_code == 200, found.text
        [seq] = [e["seq"] for e in found.json()["events"] if e["trace_id"] == trace_id]
        one = await api.get(f"/v1/audit/events/{CUSTOMER}/{seq}")
    assert one.status_code == 200, one.text
    return dict(one.json())


async def test_the_request_span_shows_the_response_it_is_about_to_have(
    stack: Stack, auditors: Keys
) -> None:
    """The server span in a served read's summary has status 200, and in a refused read's
    the refusal's status: an auditor never reads ``in_progress``."""
    connection_id = await _connection(stack)
    async with stack.api() as api:
        served = await api.get(
            f"/v1/connections/{connection_id}/records/posts",
            params={"purpose": "essential.service"},
        )
        refused = await api.get(
            f"/v1/connections/{connection_id}/records/posts", params={"purpose": "marketing"}
        )
    assert served.status_code == 200, served.text
    assert refused.status_code == 403, refused.text

    roots = []
    for response in (served, refused):
        event = await _event_of(stack, auditors.acme, response.headers["x-trace-id"])
        root = event["trace_summary"]["spans"][0]
        roots.append((event["outcome"], root["name"], root["status"], root.get("attributes")))

    assert roots == [
        ("allowed", f"GET {ROUTE}", "unset", {"http.response.status_code": 200}),
        ("denied", f"GET {ROUTE}", "unset", {"http.response.status_code": 403}),
    ]


async def test_the_console_shows_the_request_span_with_its_response_status(
    stack: Stack, auditors: Keys
) -> None:
    """The console's event page lists the request's own span with its HTTP status."""
    connection_id = await _connection(stack)
    async with stack.api() as api:
        served = await api.get(
            f"/v1/connections/{connection_id}/records/posts",
            params={"purpose": "essential.service"},
        )
    event = await _event_of(stack, auditors.acme, served.headers["x-trace-id"])

    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as browser:
        form = await browser.get("/console/sign-in")
        token = _CSRF.search(form.text)
        assert token, form.text
        signed_in = await browser.post(
            "/console/sign-in", data={"csrf_token": token.group(1), "credential": auditors.acme}
        )
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get(f"/console/events/{CUSTOMER}/{event['seq']}")
    assert page.status_code == 200, page.text

    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    assert "in_progress" not in text
    assert f"GET {ROUTE} (this request)" in text
    assert re.search(r"\(this request\) [0-9.]+ unset 200 ", text), text
