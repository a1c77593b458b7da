"""For every provider's fixtures: non-public, non-direct records are dropped; kept ones are tagged.

A provider joins the table by adding one row to ``TABLE`` per resource: its
name, the resource, the fixture pages, and the JSON path to the items in each
page (``()``: the page is the single item; a resource with its own ``extract``
takes its pages apart itself). A fixture name in lower case is a JSON file under
tests/providers/<name>/; one in UPPER_CASE is that name in the provider's
``tests/providers/<name>/<name>_fixtures.py``. Every built-in provider and every
resource it declares must have a row: a provider added without fixtures fails.
"""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from policies import (
    PUBLIC_OR_DIRECT,
    AccessContext,
    CallerClass,
    PolicyEngine,
    Visibility,
    load_policy,
)
from providers import BUILTIN_PROVIDERS
from providers.base import NormalizeContext, dig
from tests.providers.stand import fixture

# (provider, resource, fixture pages, items path)
TABLE: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("google", "profile", ("userinfo",), ()),
    ("google", "calendar.events", ("events_page1", "events_page2", "events_page3"), ("items",)),
    ("microsoft", "profile", ("userinfo",), ()),
    ("microsoft", "calendar.events", ("events_page1", "events_page2", "events_page3"),
     ("value",)),
    ("linkedin", "profile", ("userinfo",), ()),
    ("linkedin", "organization.posts", ("posts_page1", "posts_page2"), ("elements",)),
    ("instagram", "media", ("media_page1", "media_page2", "media_page3"), ("data",)),
    ("instagram", "comments", ("comments_page1", "comments_page2"), ("data",)),
    ("instagram", "conversations", ("conversations_page1", "conversations_page2"), ("data",)),
    ("calendly", "profile", ("users_me",), ()),
    ("calendly", "scheduled_events", ("events_page1", "events_page2", "events_page3"),
     ("collection",)),
    ("calendly", "invitees", ("invitees_page1", "invitees_page2"), ("collection",)),
    ("facebook", "page.posts", ("feed_page1", "feed_page2", "feed_page3"), ("data",)),
    ("facebook", "page.comments", ("comments_page1", "comments_page2", "comments_page3"),
     ("data",)),
    ("facebook", "page.conversations", ("conversations_page1", "conversations_page2"),
     ("data",)),
    ("x", "profile", ("ME",), ()),
    ("x", "mentions", ("MENTIONS_1", "MENTIONS_2", "MENTIONS_3"), ()),
    ("x", "dm_events", ("DM_EVENTS",), ()),
    ("apple", "profile", ("kept_claims",), ()),
    ("sandbox", "profile", ("ME",), ()),
    ("sandbox", "posts", ("POSTS",), ("data",)),
    ("sandbox", "comments", ("COMMENTS",), ("data",)),
    ("sandbox", "conversations", ("CONVERSATIONS",), ("data",)),
    ("sandbox", "events", ("EVENTS",), ("data",)),
]  # fmt: skip

# Built-in providers that declare no resource, and why (they have nothing to filter).
WITHOUT_RESOURCES: dict[str, str] = {}

# Providers whose every record is direct by construction, and why (nothing to drop).
ONLY_DIRECT: dict[str, str] = {
    "apple": "its one resource is the linked account holder's own kept sign-in claims",
}

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


def _page(provider: str, name: str) -> Any:
    if name.isupper():
        module = importlib.import_module(f"tests.providers.{provider}.{provider}_fixtures")
        return getattr(module, name)
    return fixture(provider, name)


def _records(
    provider: str,
    resource: str,
    files: tuple[str, ...],
    path: tuple[str, ...],
    *,
    through_json: bool = False,
    releasable: frozenset[Visibility] | None = None,
) -> Any:
    declared = BUILTIN_PROVIDERS[provider].resources[resource]
    ctx = NormalizeContext(
        customer_id=CUSTOMER,
        connection_id="con_test",
        provider=provider,
        resource=resource,
        fetched_at=datetime.now(UTC),
        releasable=releasable,
    )
    records = []
    for name in files:
        page = _page(provider, name)
        if through_json:  # as the gateway reads it from the wire: dicts and lists only
            page = json.loads(json.dumps(page))
        if declared.extract is not None:
            items = declared.extract(page)
        else:
            items = dig(page, path) if path else [page]
        records.extend(declared.normalize(item, ctx) for item in items)
    return records


@pytest.mark.parametrize(("provider", "resource", "files", "path"), TABLE)
def test_only_public_or_direct_records_are_kept_and_tagged(
    provider: str, resource: str, files: tuple[str, ...], path: tuple[str, ...]
) -> None:
    """Every dropped-visibility record is dropped; every kept one carries the customer."""
    records = _records(provider, resource, files, path)
    decision = PolicyEngine(load_policy()).decide_page(records, _context())
    allowed = {Visibility.PUBLIC, Visibility.DIRECT}

    hidden = [r for r in records if r.visibility not in allowed]

    # Other rules (under-16 in the sandbox's demo data) may drop more; never fewer.
    assert {r.visibility for r in decision.kept} <= allowed
    assert decision.dropped.get(PUBLIC_OR_DIRECT, 0) == len(hidden)
    assert {r.customer_id for r in decision.kept} == {CUSTOMER}
    assert decision.kept  # the fixtures test keeping, too


@pytest.mark.parametrize("provider", sorted({row[0] for row in TABLE}))
def test_every_provider_fixtures_include_records_to_drop(provider: str) -> None:
    """Each provider's fixtures hold at least one record the filter must drop.

    Per provider, not per resource: a DM thread is direct by construction, so a
    conversations page has nothing to drop; the provider's other pages do. A
    provider in ``ONLY_DIRECT`` has no other pages, so its records must all be direct.
    """
    records = [
        record
        for name, resource, files, path in TABLE
        if name == provider
        for record in _records(name, resource, files, path)
    ]

    if provider in ONLY_DIRECT:
        assert {r.visibility for r in records} == {Visibility.DIRECT}
    else:
        assert any(r.visibility not in {Visibility.PUBLIC, Visibility.DIRECT} for r in records)


def test_every_builtin_provider_and_resource_has_a_row() -> None:
    """Each built-in provider's every resource has fixture rows here, and no row is stale."""
    declared = {(name, r) for name, p in BUILTIN_PROVIDERS.items() for r in p.resources}
    covered = {(name, resource) for name, resource, _, _ in TABLE}
    resourceless = {name for name, p in BUILTIN_PROVIDERS.items() if not p.resources}

    assert declared - covered == set()
    assert covered - declared == set()
    assert resourceless == set(WITHOUT_RESOURCES)


def test_every_fixture_page_named_in_the_table_exists() -> None:
    """Each JSON fixture a row names is a file beside its provider's tests."""
    here = Path(__file__).parent
    missing = [
        f"{provider}/{name}.json"
        for provider, _, files, _ in TABLE
        for name in files
        if not name.isupper() and not (here / provider / f"{name}.json").is_file()
    ]

    assert missing == []
