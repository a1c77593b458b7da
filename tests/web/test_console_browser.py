"""The auditor console in a real browser: sign in, search, open an event, verify, account, file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, expect

from gateway.callers import CallerKind, create_caller
from gateway.storage import create_engine
from providers.sandbox.demo_data import JANE
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack, build_stack

COOKIE = "linkgate_console"


async def _auditor(stack: Stack, customer: str, name: str) -> str:
    engine = create_engine(stack.settings.database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.AUDITOR, name=name, customers=[customer]
        )
    finally:
        await engine.dispose()
    return key


async def _linked_and_read(stack: Stack) -> tuple[str, dict[str, object]]:
    """A linked sandbox account and one records read through the API."""
    await stack.link()
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        read = await api.get(
            f"/v1/connections/{connection['id']}/records/posts",
            params={"purpose": "essential.service"},
        )
    assert read.status_code == 200, read.text
    return str(connection["id"]), read.json()


async def _sign_in(page: Page, stack: Stack, key: str) -> None:
    await page.goto(f"{stack.gateway.url}/console/sign-in")
    await page.get_by_label("Auditor credential").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def _session_cookie(context: BrowserContext) -> dict[str, object]:
    [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
    return dict(cookie)


async def test_an_auditor_follows_a_flow_from_events_to_a_downloaded_access_report(
    database_url: str, servers: Servers, browser: Browser, screenshots: Path
) -> None:
    """Find the flow's events, open one, verify the chain, see the chart, file and download."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    connection_id, read = await _linked_and_read(stack)
    assert read["dropped"], "the sandbox's posts include some the policies drop"
    key = await _auditor(stack, CUSTOMER, "privacy-acme")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()

    await page.goto(f"{stack.gateway.url}/console/events")  # not signed in: sent to sign in
    await expect(page).to_have_title("Sign in to the auditor console · Linkgate auditor console")
    await page.screenshot(path=screenshots / "console-sign-in.png", full_page=True)
    await _sign_in(page, stack, key)
    await expect(page.get_by_role("heading", name="Access events")).to_be_visible()
    cookie = await _session_cookie(context)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert key not in await page.content()

    # The flow's events: filter by the connection and the action.
    await page.get_by_label("Connection").fill(connection_id)
    await page.get_by_label("Action").select_option("records.read")
    await page.get_by_role("button", name="Search").click()
    rows = page.get_by_role("row").filter(has_text="records.read")
    await expect(rows).to_have_count(1)
    await page.screenshot(path=screenshots / "console-events.png", full_page=True)

    await rows.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Dropped by rule")).to_be_visible()
    dropped = read["dropped"]
    assert isinstance(dropped, dict)
    for rule, count in dropped.items():
        await expect(page.get_by_role("row", name=f"{rule} {count}")).to_be_visible()
    await expect(page.get_by_text(str(read["trace_id"]))).to_be_visible()
    await expect(page.get_by_role("link", name="Previous event")).to_be_visible()
    await page.screenshot(path=screenshots / "console-event.png", full_page=True)

    await page.get_by_role("link", name="Verify chain").click()
    await page.get_by_role("button", name="Verify chain").click()
    await expect(page.get_by_role("status")).to_contain_text("OK")
    await page.screenshot(path=screenshots / "console-verify.png", full_page=True)

    await page.get_by_role("link", name="Disclosures").click()
    chart = page.get_by_role("img", name="Disclosures by data category and recipient class")
    await expect(chart).to_be_visible()
    await expect(page.get_by_role("table")).to_contain_text("internal")
    await page.screenshot(path=screenshots / "console-disclosures.png", full_page=True)

    # An access request for Jane, followed to completed, its result downloaded.
    await page.get_by_role("link", name="Processor requests", exact=True).click()
    await page.get_by_role("link", name="File a request").click()
    await page.get_by_label("Kind").select_option("access")
    await page.get_by_label("E-mail addresses").fill(str(JANE["email"]))
    await page.get_by_label("Handles").fill(f"sandbox:{JANE['handle']}")
    await page.get_by_label("Identity verified by").fill("dpo@acme")
    await page.screenshot(path=screenshots / "console-request-new.png", full_page=True)
    await page.get_by_role("button", name="File request").click()
    await expect(page.get_by_role("heading", name="Processor request prq_")).to_be_visible()
    for _ in range(100):
        if "completed" in (await page.get_by_role("status").inner_text()):
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(page.get_by_role("status")).to_contain_text("completed")
    await page.screenshot(path=screenshots / "console-request.png", full_page=True)
    request_id = page.url.rsplit("/", 1)[-1]
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download result (JSON)").click()
    download = await download_info.value
    result = json.loads(await asyncio.to_thread(Path(await download.path()).read_text))
    assert (result["id"], result["kind"], result["status"]) == (request_id, "access", "completed")
    assert "report" in result["result"]
    assert str(JANE["email"]).lower() not in json.dumps(result).lower()

    await page.get_by_role("link", name="Processor requests", exact=True).click()
    await expect(page.get_by_role("link", name=request_id)).to_be_visible()
    await page.set_viewport_size({"width": 390, "height": 844})  # phone width
    await page.screenshot(path=screenshots / "console-requests-phone.png", full_page=True)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("signed out")
    await page.goto(f"{stack.gateway.url}/console/events")
    await expect(page.get_by_role("heading", name="Sign in to the auditor console")).to_be_visible()
    await context.close()


async def test_refusals_wrong_key_other_customer_and_forged_form(
    database_url: str, servers: Servers, browser: Browser
) -> None:
    """A wrong key cannot sign in; another customer's event is a 404; a form without CSRF is 403."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    await _linked_and_read(stack)
    other = await _auditor(stack, OTHER_CUSTOMER, "privacy-globex")
    page = await browser.new_page()

    await _sign_in(page, stack, "lga_" + "x" * 43)
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await _sign_in(page, stack, stack.service_key)  # a service key is no auditor credential
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert stack.service_key not in await page.content()
    assert COOKIE not in {c["name"] for c in await page.context.cookies()}

    await _sign_in(page, stack, other)
    await expect(page.get_by_role("heading", name="Access events")).to_be_visible()
    foreign = await page.goto(f"{stack.gateway.url}/console/events/{CUSTOMER}/1")
    assert foreign is not None
    assert foreign.status == 404
    await expect(page.get_by_role("alert")).to_contain_text("no such audit event")

    forged = await page.request.post(
        f"{stack.gateway.url}/console/verify", form={"customer_id": OTHER_CUSTOMER}
    )
    assert forged.status == 403
    assert "did not come from the console" in await forged.text()
    no_session = await page.context.request.post(
        f"{stack.gateway.url}/console/sign-in", form={"credential": other}
    )
    assert no_session.status == 403  # the sign-in form has its own CSRF token
