"""The connect portal in a real browser: link, disconnect, reconnect."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect
from sqlalchemy import update

from gateway.storage import connections, create_engine, writer
from tests.conftest import Servers
from tests.gateway.conftest import Stack, build_stack


async def _portal(database_url: str, servers: Servers) -> tuple[Stack, str]:
    stack = await build_stack(database_url, servers, auto_approve=False)
    session = await stack.connect_session()
    return stack, str(session["connect_url"])


async def _link_through_consent(page: Page, portal_url: str, button: str) -> None:
    await page.goto(portal_url)
    await page.get_by_role("link", name=button).click()
    await expect(page.get_by_role("button", name="Approve")).to_be_visible()
    await page.get_by_role("button", name="Approve").click()
    await expect(page.get_by_role("heading", name="Account linked")).to_be_visible()


async def test_an_admin_links_disconnects_and_reconnects(
    database_url: str, servers: Servers, browser: Browser, screenshots: Path
) -> None:
    """Link through the consent page, disconnect with confirmation, and reconnect needs_reauth."""
    stack, portal_url = await _portal(database_url, servers)
    page = await browser.new_page(viewport={"width": 390, "height": 844})  # phone width

    await page.goto(portal_url)
    await expect(page).to_have_title("Linked accounts of acme · Linkgate")
    await page.screenshot(path=screenshots / "portal-empty.png", full_page=True)
    await _link_through_consent(page, portal_url, "Connect Sandbox (local demo provider)")
    await page.screenshot(path=screenshots / "callback-linked.png", full_page=True)

    await page.goto(portal_url)
    await expect(page.get_by_role("cell", name="Active")).to_be_visible()
    await page.screenshot(path=screenshots / "portal-linked.png", full_page=True)

    # Disconnect: a confirmation page that says what will happen.
    await page.get_by_role("link", name="Disconnect").click()
    await expect(page.get_by_text("asks sandbox to revoke its access")).to_be_visible()
    await page.screenshot(path=screenshots / "disconnect-confirm.png", full_page=True)
    await page.get_by_role("button", name="Disconnect").click()
    await expect(page.get_by_role("status")).to_contain_text("disconnected")
    await expect(page.get_by_role("cell", name="Disconnected")).to_be_visible()

    # A connection the provider stopped honouring asks for re-consent.
    engine = create_engine(stack.settings.database_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(
                update(connections).values(status="needs_reauth", status_reason="invalid_grant")
            )
    finally:
        await engine.dispose()
    await page.goto(portal_url)
    await expect(page.get_by_role("cell", name="Needs re-consent")).to_be_visible()
    await page.get_by_role("link", name="Reconnect").click()
    await page.get_by_role("button", name="Approve").click()
    await expect(page.get_by_text("linked again")).to_be_visible()
    await page.goto(portal_url)
    await expect(page.get_by_role("cell", name="Active")).to_be_visible()

    async with stack.api() as api:
        listed = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()
    assert [c["status"] for c in listed["connections"]] == ["active"]
    html = await page.content()
    assert "v1.t1." not in html, "no sealed or clear token on any page"


async def test_a_refused_consent_lands_on_a_clear_page(
    database_url: str, servers: Servers, browser: Browser, screenshots: Path
) -> None:
    """Deny at the provider: the callback page says nothing was linked."""
    stack, portal_url = await _portal(database_url, servers)
    page = await browser.new_page()

    await page.goto(portal_url)
    await page.get_by_role("link", name="Connect Sandbox (local demo provider)").click()
    await page.get_by_role("button", name="Deny").click()

    await expect(page.get_by_role("alert")).to_contain_text("declined")
    await page.screenshot(path=screenshots / "callback-refused.png", full_page=True)
    async with stack.api() as api:
        listed = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()
    assert listed["connections"] == []


async def test_a_forged_disconnect_form_is_refused(
    database_url: str, servers: Servers, browser: Browser
) -> None:
    """A disconnect POST without the form's CSRF token changes nothing."""
    stack, portal_url = await _portal(database_url, servers)
    page = await browser.new_page()
    await _link_through_consent(page, portal_url, "Connect Sandbox (local demo provider)")
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]

    response = await page.request.post(
        f"{portal_url}/connections/{connection['id']}/disconnect", form={"csrf_token": "forged"}
    )

    assert response.status == 403
    async with stack.api() as api:
        still = (await api.get(f"/v1/connections/{connection['id']}")).json()
    assert still["status"] == "active"
