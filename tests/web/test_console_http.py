"""The auditor console over plain HTTP: cookie attributes, and bad input as clear pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from gateway.callers import CallerKind, create_caller
from gateway.storage import create_engine, writer
from gateway.storage.schema import processor_request_tables
from providers.sandbox.demo_data import JANE
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack, build_stack

_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def _auditor(stack: Stack, customer: str) -> str:
    engine = create_engine(stack.settings.database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.AUDITOR, name=f"privacy-{customer}", customers=[customer]
        )
    finally:
        await engine.dispose()
    return key


async def _past_due(stack: Stack) -> None:
    """Every request's due date is yesterday."""
    engine = create_engine(stack.settings.database_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(
                update(processor_request_tables.requests).values(
                    due_at=datetime.now(UTC) - timedelta(days=1)
                )
            )
    finally:
        await engine.dispose()


async def _refusals(stack: Stack) -> int:
    """How many caller.refused events acme's log holds."""
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as api:
        answer = await api.get(
            "/v1/audit/events",
            params={"customer_id": CUSTOMER, "action": "caller.refused"},
            headers={"Authorization": f"Bearer {await _auditor(stack, CUSTOMER)}"},
        )
    return len(answer.json()["events"])


def _token(page: httpx.Response) -> str:
    found = _TOKEN.search(page.text)
    assert found, page.text
    return found.group(1)


async def _signed_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/sign-in")
    return await client.post(
        "/console/sign-in", data={"csrf_token": _token(form), "credential": key}
    )


@asynccontextmanager
async def _console(stack: Stack, key: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A signed-in browser and its session's CSRF token."""
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as client:
        answer = await _signed_in(client, key)
        assert answer.status_code == 303, answer.text
        page = await client.get("/console/requests/new")
        yield client, _token(page)


async def test_the_session_cookie_is_secure_behind_https(
    database_url: str, servers: Servers
) -> None:
    """With an https public URL both console cookies are Secure, HttpOnly, SameSite=Strict."""
    stack = await build_stack(
        database_url, servers, auto_approve=True, public_url="https://linkgate.example"
    )
    key = await _auditor(stack, CUSTOMER)
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as client:
        form = await client.get("/console/sign-in")
        # httpx keeps Secure cookies off plain http, as a browser would: send it by hand.
        binding = form.cookies["linkgate_console_sign_in"]
        signed_in = await client.post(
            "/console/sign-in",
            data={"csrf_token": _token(form), "credential": key},
            headers={"Cookie": f"linkgate_console_sign_in={binding}"},
        )

    [pre] = form.headers.get_list("set-cookie")
    session = next(
        c for c in signed_in.headers.get_list("set-cookie") if c.startswith("linkgate_console=")
    )
    for cookie in (pre, session):
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=strict", "path=/console"} <= attributes
    assert signed_in.status_code == 303
    assert key not in session


async def test_bad_filters_and_ids_are_clear_pages_never_500(
    database_url: str, servers: Servers
) -> None:
    """Malformed filters are a 400 beside the form; unknown or foreign ids are 404 pages."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    key = await _auditor(stack, CUSTOMER)
    async with _console(stack, key) as (client, _token_value):
        subject = await client.get("/console/events", params={"subject": "not an identifier"})
        since = await client.get("/console/events", params={"since": "yesterday"})
        cursor = await client.get("/console/events", params={"cursor": "x" * 50})
        foreign = await client.get("/console/events", params={"customer_id": OTHER_CUSTOMER})
        bad_seq = await client.get(f"/console/events/{CUSTOMER}/abc")
        missing = await client.get(f"/console/events/{CUSTOMER}/99999")
        request = await client.get("/console/requests/prq_nope")
        status = await client.get("/console/requests", params={"status": "sideways"})
        # Well-formed, but past what a UTC time can hold; until (inclusive) adds a day.
        early = await client.get("/console/events", params={"since": "0001-01-01T00:00+01:00"})
        late = await client.get("/console/events", params={"until": "9999-12-31"})

    assert (subject.status_code, since.status_code, cursor.status_code) == (400, 400, 400)
    [alert] = re.findall(r'role="alert">([^<]*)<', subject.text)
    assert "subject is not an e-mail address" in alert
    assert "not an identifier" not in alert  # the error never repeats an identifier
    assert 'role="search"' in subject.text
    assert foreign.status_code == 403
    assert (bad_seq.status_code, missing.status_code, request.status_code) == (404, 404, 404)
    assert status.status_code == 400
    assert (early.status_code, late.status_code) == (400, 200)
    for page in (subject, foreign, missing, status, early, late):
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_filing_refuses_bad_subjects_notes_and_duplicates(
    database_url: str, servers: Servers
) -> None:
    """A malformed identifier, a note repeating it, or a duplicate come back to the form."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    key = await _auditor(stack, CUSTOMER)
    email = str(JANE["email"])
    async with _console(stack, key) as (client, token):
        base = {"csrf_token": token, "customer_id": CUSTOMER, "kind": "access"}
        bad = await client.post("/console/requests", data={**base, "emails": "no-at-sign"})
        none = await client.post("/console/requests", data=base)
        handle = await client.post("/console/requests", data={**base, "handles": "@nobody"})
        note = await client.post(
            "/console/requests", data={**base, "emails": email, "note": f"asked by {email}"}
        )
        other = await client.post(
            "/console/requests", data={**base, "customer_id": OTHER_CUSTOMER, "emails": email}
        )
        first = await client.post("/console/requests", data={**base, "emails": email})
        again = await client.post("/console/requests", data={**base, "emails": email})
        detail = await client.get(first.headers["location"])
        early = await client.get(first.headers["location"] + "/result")
        await _past_due(stack)
        listed = await client.get("/console/requests")

    assert other.status_code == 403
    for refused in (bad, none, handle, note):
        assert refused.status_code == 400, refused.text
        assert 'role="alert"' in refused.text
    assert "no-at-sign" not in bad.text
    assert email.lower() not in note.text.lower()
    assert first.status_code == 303
    assert again.status_code == 409
    assert "Mark verified" in detail.text  # filed without verified_by: verify it here
    assert early.status_code == 409
    [row] = re.findall(r'<tr class="overdue">.*?</tr>', listed.text, re.DOTALL)
    assert first.headers["location"] in row
    assert "Overdue" in row


async def test_a_nul_in_a_form_field_is_a_clear_page_and_nothing_is_filed(
    database_url: str, servers: Servers
) -> None:
    """A NUL in a console form is a 400 page, on both databases (PostgreSQL's text holds none)."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    key = await _auditor(stack, CUSTOMER)
    email = str(JANE["email"])
    async with _console(stack, key) as (client, token):
        base = {"csrf_token": token, "customer_id": CUSTOMER, "kind": "access", "emails": email}
        answers = [
            await client.post("/console/requests", data={**base, "note": "called\x00"}),
            await client.post("/console/requests", data={**base, "verified_by": "desk\x00"}),
        ]
        listed = await client.get("/console/requests")

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "NUL" in answer.text
    assert "/console/requests/prq_" not in listed.text


async def test_an_auditor_of_another_customer_cannot_see_a_request(
    database_url: str, servers: Servers
) -> None:
    """Acme's request is a 404 for globex's auditor, its result and files too."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    acme, globex = await _auditor(stack, CUSTOMER), await _auditor(stack, OTHER_CUSTOMER)
    async with _console(stack, acme) as (client, token):
        filed = await client.post(
            "/console/requests",
            data={
                "csrf_token": token,
                "customer_id": CUSTOMER,
                "kind": "access",
                "emails": str(JANE["email"]),
            },
        )
    path = filed.headers["location"]
    async with _console(stack, globex) as (client, token):
        pages = [
            await client.get(path),
            await client.get(f"{path}/result"),
            await client.get(f"{path}/files/records.json"),
            await client.post(f"{path}/verify", data={"csrf_token": token, "verified_by": "x"}),
        ]
        listed = await client.get("/console/requests")

    assert [p.status_code for p in pages] == [404, 404, 404, 404]
    assert await _refusals(stack) == 4  # each one recorded in acme's log
    assert path.rsplit("/", 1)[-1] not in listed.text
