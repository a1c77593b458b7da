"""An error page in a real browser: the portal during a database outage."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.engine import make_url

from tests.conftest import Servers
from tests.gateway.conftest import build_stack
from tests.trust.test_database_faults import _allow_connections


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_the_portal_during_an_outage_shows_a_page_that_says_what_to_do(
    database_url: str, servers: Servers, browser: Browser, screenshots: Path
) -> None:
    """With PostgreSQL refusing connections the admin reads a 503 page, not JSON; then it works."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    session = await stack.connect_session()
    database = str(make_url(stack.settings.database_url).database)
    page = await browser.new_page(viewport={"width": 390, "height": 844})

    await _allow_connections(database, False)
    try:
        answer = await page.goto(str(session["connect_url"]))
        assert answer is not None
        assert answer.status == 503
        assert answer.headers["content-type"].startswith("text/html")
        await expect(page).to_have_title("Temporarily unavailable · Linkgate")
        await expect(page.get_by_role("heading", name="Temporarily unavailable")).to_be_visible()
        await expect(page.get_by_role("alert")).to_contain_text("nothing was changed")
        await expect(page.get_by_text("Wait 5 seconds, then try again.")).to_be_visible()
        await expect(page.get_by_text(answer.headers["x-trace-id"])).to_be_visible()
        await page.screenshot(path=screenshots / "portal-outage.png", full_page=True)
        html = await page.content()
    finally:
        await _allow_connections(database, True)
    assert str(session["token"]) not in html
    assert "problem" not in html

    await page.reload()
    await expect(page).to_have_title("Linked accounts of acme · Linkgate")
