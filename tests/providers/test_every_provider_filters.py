"""For every provider's fixtures: non-public, non-direct records are dropped; kept ones are tagged.

A provider joins the table by adding one row to ``TABLE``: its name, the
resource, and the fixture files (under tests/providers/<name>/) that hold
pages of items, with the JSON path to the items in each page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from policies import AccessContext, CallerClass, PolicyEngine, Visibility, load_policy
from providers import BUILTIN_PROVIDERS
from providers.base import NormalizeContext, dig
from tests.providers.stand import fixture

# (provider, resource, fixture files, items path)
TABLE: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("google", "calendar.events", ("events_page1", "events_page2", "events_page3"), ("items",)),
    ("microsoft", "calendar.events", ("events_page1", "events_page2", "events_page3"),
     ("value",)),
    ("linkedin", "organization.posts", ("posts_page1", "posts_page2"), ("elements",)),
    ("instagram", "media", ("media_page1", "media_page2", "media_page3"), ("data",)),
    ("instagram", "comments", ("comments_page1", "comments_page2"), ("data",)),
    ("instagram", "conversations", ("conversations_page1", "conversations_page2"), ("data",)),
    ("calendly", "scheduled_events", ("events_page1", "events_page2", "events_page3"),
     ("collection",)),
    ("calendly", "invitees", ("invitees_page1", "invitees_page2"), ("collection",)),
    ("facebook", "page.posts", ("feed_page1", "feed_page2", "feed_page3"), ("data",)),
    ("facebook", "page.comments", ("comments_page1", "comments_page2", "comments_page3"),
     ("data",)),
    ("facebook", "page.conversations", ("conversations_page1", "conversations_page2"),
     ("data",)),
]  # fmt: skip

CUSTOMER = "acme"


def _context() -> AccessContext:
    return AccessContext(
        service_id="svc_test",
        caller_class=CallerClass.INTERNAL,
        granted_purposes=frozenset({"essential.service"}),
        entitled_customers=frozenset({CUSTOMER}),
        connection_customer_id=CUSTOMER,
        purpose="essential.service",
        now=datetime.now(UTC),
        consented=lambda _identifier: False,
        suppressed=lambda _identifier, _purpose: False,
        pseudonymize=lambda identifier: str(identifier),
    )


def _records(provider: str, resource: str, files: tuple[str, ...], path: tuple[str, ...]) -> Any:
    normalize = BUILTIN_PROVIDERS[provider].resources[resource].normalize
    ctx = NormalizeContext(
        customer_id=CUSTOMER,
        connection_id="con_test",
        provider=provider,
        resource=resource,
        fetched_at=datetime.now(UTC),
    )
    return [normalize(item, ctx) for name in files for item in dig(fixture(provider, name), path)]


@pytest.mark.parametrize(("provider", "resource", "files", "path"), TABLE)
def test_only_public_or_direct_records_are_kept_and_tagged(
    provider: str, resource: str, files: tuple[str, ...], path: tuple[str, ...]
) -> None:
    """Every dropped-visibility record is dropped; every kept one carries the customer."""
    records = _records(provider, resource, files, path)
    decision = PolicyEngine(load_policy()).decide_page(records, _context())
    allowed = {Visibility.PUBLIC, Visibility.DIRECT}

    assert [r.id for r in decision.kept] == [r.id for r in records if r.visibility in allowed]
    assert {r.customer_id for r in decision.kept} == {CUSTOMER}
    assert decision.kept  # the fixtures test keeping, too


@pytest.mark.parametrize("provider", sorted({row[0] for row in TABLE}))
def test_every_provider_fixtures_include_records_to_drop(provider: str) -> None:
    """Each provider's fixtures hold at least one record the filter must drop.

    Per provider, not per resource: a DM thread is direct by construction, so a
    conversations page has nothing to drop; the provider's other pages do.
    """
    records = [
        record
        for name, resource, files, path in TABLE
        if name == provider
        for record in _records(name, resource, files, path)
    ]

    assert any(r.visibility not in {Visibility.PUBLIC, Visibility.DIRECT} for r in records)
