"""Consent and suppression stores on SQLite and PostgreSQL, read back through the page lookup."""

from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidParameter
from gateway.subject_controls import SuppressionKind
from gateway.subject_controls.subjects import hash_identifiers
from policies import (
    Identifier,
    email_identifier,
    handle_identifier,
    phone_identifier,
    provider_user_identifier,
)
from tests.subject_controls.conftest import CUSTOMER, Stores, make_actor

MARKETING = "marketing.communications"
JANE_EMAIL = email_identifier("Jane@Customer.Example")
JANE_HANDLE = handle_identifier("sandbox", "@JaneDoe")
JANE = (JANE_EMAIL, JANE_HANDLE)
OMAR = (provider_user_identifier("sandbox", "usr_omar"),)
LUIS = (phone_identifier("+1 415 555 0100"),)
EVERYONE = JANE + OMAR + LUIS


async def _consented(stores: Stores, identifiers: tuple[Identifier, ...], purpose: str = MARKETING,
                     customer: str = CUSTOMER) -> set[Identifier]:  # fmt: skip
    view = await stores.controls.for_identifiers(
        customer, purpose, identifiers, consent_required=True
    )
    return {i for i in identifiers if view.consented(i)}


async def _suppressed(stores: Stores, purpose: str, customer: str = CUSTOMER) -> set[Identifier]:
    view = await stores.controls.for_identifiers(
        customer, purpose, EVERYONE, consent_required=False
    )
    return {i for i in EVERYONE if view.suppressed(i, purpose)}


async def test_recorded_consent_covers_every_identifier_of_the_subject(stores: Stores) -> None:
    """A consent given through two identifiers is found through either, and only for them."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    assert set(JANE) == await _consented(stores, EVERYONE)


async def test_consent_covers_more_specific_purposes_only(stores: Stores) -> None:
    """Consent to marketing.communications covers .email under it, not another purpose."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    assert set(JANE) == await _consented(stores, JANE, "marketing.communications.email")
    assert set() == await _consented(stores, JANE, "marketing.advertising")


async def test_consent_is_per_customer(stores: Stores) -> None:
    """Another customer of the same End User sees no consent."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    assert set() == await _consented(stores, JANE, customer="globex")


async def test_withdrawing_through_one_identifier_ends_the_whole_consent(stores: Stores) -> None:
    """Withdrawal by email also ends consent found through the handle."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    withdrawal = await stores.consents.withdraw(CUSTOMER, (JANE_EMAIL,), actor=make_actor())
    assert len(withdrawal.consent_ids) == 1
    assert set() == await _consented(stores, JANE)


async def test_withdrawal_for_another_purpose_keeps_the_consent(stores: Stores) -> None:
    """Withdrawing analytics consent leaves marketing consent in place."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    withdrawal = await stores.consents.withdraw(
        CUSTOMER, JANE, purpose="analytics.reporting", actor=make_actor()
    )
    assert withdrawal.consent_ids == ()
    assert set(JANE) == await _consented(stores, JANE)


async def test_consent_after_withdrawal_is_recorded_again(stores: Stores) -> None:
    """A change of mind back to yes is a new consent."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    await stores.consents.withdraw(CUSTOMER, JANE, actor=make_actor())
    await stores.consents.record(CUSTOMER, (JANE_HANDLE,), purpose=MARKETING, actor=make_actor())
    assert {JANE_HANDLE} == await _consented(stores, JANE)


@pytest.mark.parametrize("purpose", ["essential.service", "third_party_sharing", "no.such.use"])
async def test_consent_is_refused_for_purposes_consent_cannot_make_lawful(
    stores: Stores, purpose: str
) -> None:
    """Only purposes whose policy entry requires consent take a consent; sales never."""
    with pytest.raises(InvalidParameter):
        await stores.consents.record(CUSTOMER, JANE, purpose=purpose, actor=make_actor())


async def test_erasure_suppresses_the_subject_for_every_purpose(stores: Stores) -> None:
    """An erasure names no purpose and covers them all."""
    await stores.suppressions.add(
        CUSTOMER, JANE, kind=SuppressionKind.ERASURE, reason="processor request pr_1",
        actor=make_actor(),
    )  # fmt: skip
    assert set(JANE) == await _suppressed(stores, "essential.service")
    assert set(JANE) == await _suppressed(stores, "essential.service.operations.support")


async def test_objection_suppresses_only_the_purposes_it_names(stores: Stores) -> None:
    """An objection to marketing leaves providing the service untouched."""
    await stores.suppressions.add(
        CUSTOMER, OMAR, kind="objection", purposes=["marketing"], reason="objected by phone call",
        actor=make_actor(),
    )  # fmt: skip
    assert set(OMAR) == await _suppressed(stores, MARKETING)
    assert set() == await _suppressed(stores, "essential.service")


async def test_suppression_is_per_customer(stores: Stores) -> None:
    """A suppression at one customer does not reach another."""
    await stores.suppressions.add(
        CUSTOMER, LUIS, kind="restriction", reason="restriction request", actor=make_actor()
    )
    assert set(LUIS) == await _suppressed(stores, "essential.service")
    assert set() == await _suppressed(stores, "essential.service", customer="globex")


@pytest.mark.parametrize("kind", ["erasure", "consent_withdrawal"])
async def test_kinds_that_cover_everything_take_no_purposes(stores: Stores, kind: str) -> None:
    """Erasure and consent withdrawal cannot be narrowed to some purposes."""
    with pytest.raises(InvalidParameter):
        await stores.suppressions.add(
            CUSTOMER, JANE, kind=kind, purposes=["marketing"], reason="x" * 10, actor=make_actor()
        )


async def test_unknown_kind_and_purpose_are_refused(stores: Stores) -> None:
    """A typo in kind or purpose is an error, not a suppression that matches nothing."""
    with pytest.raises(InvalidParameter):
        await stores.suppressions.add(CUSTOMER, JANE, kind="erase", reason="r", actor=make_actor())
    with pytest.raises(InvalidParameter):
        await stores.suppressions.add(
            CUSTOMER, JANE, kind="objection", purposes=["marketting"], reason="r",
            actor=make_actor(),
        )  # fmt: skip


async def test_a_note_repeating_an_identifier_is_refused(stores: Stores) -> None:
    """Evidence or a reason quoting the End User's email would store it in clear."""
    with pytest.raises(InvalidParameter):
        await stores.consents.record(
            CUSTOMER, JANE, purpose=MARKETING, evidence="opt-in by JANE@customer.example",
            actor=make_actor(),
        )  # fmt: skip
    with pytest.raises(InvalidParameter):
        await stores.suppressions.add(
            CUSTOMER, LUIS, kind="erasure", reason="called from (415) 555-0100", actor=make_actor()
        )


async def test_no_identifier_is_stored_in_clear(stores: Stores) -> None:
    """Tables hold keyed hashes only: no email, phone, handle or provider id appears."""
    await stores.consents.record(
        CUSTOMER, EVERYONE, purpose=MARKETING, evidence="web form v3", actor=make_actor()
    )
    await stores.suppressions.add(
        CUSTOMER, EVERYONE, kind="objection", purposes=["marketing"], reason="objection letter",
        actor=make_actor(),
    )  # fmt: skip
    stored = (await stores.table_text()).lower()
    for needle in ("jane@customer.example", "janedoe", "usr_omar", "4155550100"):
        assert needle not in stored
    assert stores.hasher.hash(CUSTOMER, str(JANE_EMAIL)) in stored


async def test_every_change_is_audited_with_hashed_subjects(stores: Stores) -> None:
    """consent.recorded, consent.withdrawn and suppression.added carry hashes, never identifiers."""
    actor = make_actor()
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=actor)
    await stores.consents.withdraw(CUSTOMER, JANE, actor=actor)
    await stores.suppressions.add(
        CUSTOMER, JANE, kind="erasure", reason="processor request pr_9", actor=actor
    )
    events = await stores.audit_events()
    assert [e["action"] for e in events] == [
        "consent.recorded",
        "consent.withdrawn",
        "suppression.added",
    ]
    expected = sorted(stores.hasher.hash(CUSTOMER, str(i)) for i in JANE)
    for event in events:
        content = json.loads(event["content"])
        assert expected == content["subjects"]
        assert actor.id == event["caller_id"]
        assert "janedoe" not in event["content"].lower()
        assert "customer.example" not in event["content"].lower()


async def test_suppression_list_shows_counts_and_ids_only(stores: Stores) -> None:
    """latest() and counts() say what kind, when and by whom; the reason stays in the row."""
    added = await stores.suppressions.add(
        CUSTOMER, JANE, kind="restriction", purposes=["marketing", "analytics"],
        reason="restriction request", actor=make_actor(),
    )  # fmt: skip
    [listed] = await stores.suppressions.latest(CUSTOMER)
    assert added == listed
    assert listed.identifiers == 2
    assert (await stores.suppressions.counts(CUSTOMER)) == {
        "erasure": 0,
        "restriction": 1,
        "objection": 0,
        "consent_withdrawal": 0,
    }


async def test_a_withdrawal_and_a_suppression_stand_and_are_audited_when_the_log_is_down(
    stores: Stores,
) -> None:
    """Both protect the End User: in force at once, their events committed with them
    (the audit outbox) and appended by the drain once the log is back."""
    await stores.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    await stores.audit.stop()  # the audit log cannot be written from here on

    withdrawal = await stores.consents.withdraw(CUSTOMER, (JANE_EMAIL,), actor=make_actor())
    await stores.suppressions.add(
        CUSTOMER, OMAR, kind=SuppressionKind.ERASURE, reason="request pr_7", actor=make_actor()
    )
    assert len(withdrawal.consent_ids) == 1
    assert set() == await _consented(stores, JANE)
    assert set(OMAR) == await _suppressed(stores, MARKETING)
    assert [e["action"] for e in await stores.audit_events()] == ["consent.recorded"]

    assert await stores.audit_outbox.drain() == 2
    assert await stores.audit_outbox.drain() == 0
    events = await stores.audit_events()
    assert [e["action"] for e in events] == [
        "consent.recorded",
        "consent.withdrawn",
        "suppression.added",
    ]
    omar = hash_identifiers(stores.hasher, CUSTOMER, OMAR)
    assert tuple(json.loads(events[2]["content"])["subjects"]) == omar
