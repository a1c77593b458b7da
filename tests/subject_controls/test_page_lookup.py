"""The page lookup on SQLite and PostgreSQL: every identifier of a large page is asked about,
scopes and consents come back per hash, and a lookup that cannot be read releases nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.errors import SubjectControlsUnavailable
from gateway.storage.schema import subject_control_tables
from policies import Identifier, email_identifier
from tests.subject_controls.conftest import CUSTOMER, Stores, make_actor

MARKETING = "marketing.communications"
SERVICE = "essential.service"
# More identifiers than one IN list of the chunked (SQLite) read holds.
PAGE = tuple(email_identifier(f"user{n}@customer.example") for n in range(1200))
ERASED, OBJECTED, CONSENTED = PAGE[3], PAGE[1199], PAGE[700]


async def _rename(stores: Stores, table: str, to: str) -> None:
    async with stores.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))


async def _suppressed(stores: Stores, purpose: str, page: tuple[Identifier, ...]) -> set[str]:
    view = await stores.controls.for_identifiers(CUSTOMER, purpose, page, consent_required=False)
    return {identifier.value for identifier in page if view.suppressed(identifier, purpose)}


async def test_suppressions_anywhere_on_a_large_page_are_found_for_their_purposes(
    stores: Stores,
) -> None:
    """An erasure covers every purpose, an objection to marketing only marketing."""
    await stores.suppressions.add(
        CUSTOMER, (ERASED,), kind="erasure", reason="processor request pr_7", actor=make_actor()
    )
    await stores.suppressions.add(
        CUSTOMER, (OBJECTED,), kind="objection", purposes=["marketing"],
        reason="objection letter", actor=make_actor(),
    )  # fmt: skip
    assert await _suppressed(stores, SERVICE, PAGE) == {ERASED.value}
    assert await _suppressed(stores, MARKETING, PAGE) == {ERASED.value, OBJECTED.value}
    # An identifier the view was not loaded for counts as suppressed (fail closed).
    view = await stores.controls.for_identifiers(
        CUSTOMER, SERVICE, PAGE[:10], consent_required=False
    )
    assert view.suppressed(PAGE[20], SERVICE)


async def test_a_consent_anywhere_on_a_large_page_is_found(stores: Stores) -> None:
    await stores.consents.record(CUSTOMER, (CONSENTED,), purpose=MARKETING, actor=make_actor())
    view = await stores.controls.for_identifiers(CUSTOMER, MARKETING, PAGE, consent_required=True)
    assert [identifier for identifier in PAGE if view.consented(identifier)] == [CONSENTED]


@pytest.mark.parametrize(
    "name", [subject_control_tables.suppression_subjects.name, subject_control_tables.consents.name]
)
async def test_an_unreadable_lookup_fails_closed_and_the_next_one_reads_again(
    stores: Stores, name: str
) -> None:
    """A failed read raises SubjectControlsUnavailable (503), naming no hash; once the table
    is back, the same controls read it (the pool holds no broken connection)."""
    await stores.suppressions.add(
        CUSTOMER, (ERASED,), kind="erasure", reason="processor request pr_8", actor=make_actor()
    )
    await stores.consents.record(CUSTOMER, (CONSENTED,), purpose=MARKETING, actor=make_actor())
    assert await _suppressed(stores, SERVICE, PAGE) == {ERASED.value}  # prepared and pooled

    await _rename(stores, name, f"{name}_gone")
    with pytest.raises(SubjectControlsUnavailable) as failed:
        await stores.controls.for_identifiers(CUSTOMER, MARKETING, PAGE, consent_required=True)
    assert "hmac-sha256" not in str(failed.value)
    assert "customer.example" not in str(failed.value)

    await _rename(stores, f"{name}_gone", name)
    view = await stores.controls.for_identifiers(CUSTOMER, MARKETING, PAGE, consent_required=True)
    assert [identifier for identifier in PAGE if view.suppressed(identifier, MARKETING)] == [ERASED]
    assert [identifier for identifier in PAGE if view.consented(identifier)] == [CONSENTED]
