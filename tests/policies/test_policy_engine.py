"""Engine mechanics that no single rule owns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from policies import (
    AccessContext,
    CallerClass,
    Field,
    Identifier,
    Outcome,
    PolicyEngine,
    Record,
    Subject,
    email_identifier,
)
from tests.policies.conftest import ANN


def test_released_copy_keeps_every_other_record_field(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A redacted record differs from the original only in data and subjects."""
    record = make_record(
        data={"odd": Field("x", "user.mystery"), "text": Field("hi", "user.content")},
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
        extra={"likes": 3},
    )
    released = engine.decide(record, make_context()).record
    assert released is not None
    for spec in dataclasses.fields(Record):
        if spec.name != "data":
            assert getattr(record, spec.name) == getattr(released, spec.name), spec.name


def test_decision_explains_a_drop(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A drop names its rule, gives a reason and releases nothing."""
    decision = engine.decide(make_record(visibility="private"), make_context())
    assert decision.outcome is Outcome.DROP
    assert decision.reason
    assert decision.record is None


def test_page_counts_drops_by_rule(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """The page summary counts dropped records per rule id."""
    records = [make_record(), make_record(visibility="private"), make_record(customer_id="x")]
    page = engine.decide_page(records, make_context())
    assert page.dropped == {"public-or-direct": 1, "tenant-tag": 1}
    assert len(page.kept) == 1


def test_contexts_are_not_mixed_up(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Alternating contexts each get their own verdicts (per-context preparation is keyed)."""
    allowed = make_context()
    refused = make_context(entitled_customers=frozenset())
    for _ in range(2):
        assert engine.decide(make_record(), allowed).allowed
        assert not engine.decide(make_record(), refused).allowed


def test_purpose_work_is_shared_but_each_request_judged(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """What a purpose implies is reused, while grants and entitlement stay per request."""
    granted = make_context()
    not_granted = make_context(granted_purposes=frozenset({"marketing"}))
    third_party = make_context(caller_class=CallerClass.THIRD_PARTY)
    sms = make_record(data={"mobile": Field("+14155550100", "user.contact.phone_number", True)})
    for _ in range(2):
        assert engine.decide(sms, granted).outcome is Outcome.KEEP
        assert engine.check_access(not_granted).rule_id == "purpose"
        assert engine.decide(sms, third_party).outcome is Outcome.REDACT


def test_made_up_purposes_are_refused_and_not_remembered(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """Purposes outside the Fides taxonomy are refused and leave no trace in the engine."""
    for n in range(50):
        decision = engine.check_access(make_context(purpose=f"made.up.{n}"))
        assert decision.rule_id == "purpose"
    remembered = [key for key in engine._purpose_plans if key[0].startswith("made.up")]
    assert remembered == []


def test_values_withheld_from_a_record_a_later_rule_drops_are_not_reported(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """The suppressed record's withheld field is no redaction, of it or of the next record."""
    health = {"health": Field("x", "user.health_and_medical")}
    suppressed = make_record(id="rec-1", data=health)
    other = Subject(identifiers=(email_identifier("bob@example.com"),))
    kept = make_record(id="rec-2", subjects=(other,), data={"text": Field("hi", "user.content")})
    ctx = make_context(suppressed=ANN.identifiers)

    page = engine.decide_page([suppressed, kept], ctx)

    assert page.dropped == {"suppression": 1}
    assert page.kept == [kept]
    assert page.redacted == []


def test_request_plan_takes_each_fact_from_its_context(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """The per-request plan, built positionally, holds the context's own callables and facts
    in their places (a swapped consented/suppressed would judge every record wrongly)."""

    def consented(_identifier: Identifier) -> bool:
        return True

    def suppressed(_identifier: Identifier, _purpose: str) -> bool:
        return False

    def pseudonymize(_identifier: Identifier) -> str:
        return "p"

    ctx = dataclasses.replace(
        make_context(), consented=consented, suppressed=suppressed, pseudonymize=pseudonymize
    )
    plan = engine._plan(ctx)
    assert (plan.consented, plan.suppressed, plan.pseudonymize) == (
        consented,
        suppressed,
        pseudonymize,
    )
    assert (plan.customer_id, plan.purpose) == (ctx.connection_customer_id, ctx.purpose)
    assert plan.refusal is None
    assert plan.rule is engine.policy.rule_for(ctx.purpose)
    assert plan.child_cutoff.year == ctx.now.year - 16
    shared = engine._purpose_plan(ctx.purpose, ctx.caller_class)
    assert (plan.withhold_sms, plan.check_identifiers) == (
        shared.withhold_sms,
        shared.check_identifiers,
    )
    assert plan.field_verdicts is shared.field_verdicts
