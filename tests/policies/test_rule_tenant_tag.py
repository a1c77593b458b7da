"""Rule tenant-tag.

Notice: "we may collect and store personal information about you on behalf of
a Officium Solutions LLC customer" ... "Provide Officium Solutions LLC Services
to the Officium Solutions LLC customer on whose behalf we collect or store the
information".
"""

from __future__ import annotations

from collections.abc import Callable

from policies import TENANT_TAG, AccessContext, Outcome, PolicyEngine, Record


def test_entitled_caller_may_proceed(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A caller entitled to the connection owner may fetch."""
    assert engine.check_access(make_context()).allowed


def test_caller_not_entitled_is_refused(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A caller not entitled to the connection owner gets nothing, before any fetch."""
    ctx = make_context(entitled_customers=frozenset({"cust-2"}))
    decision = engine.check_access(ctx)
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, TENANT_TAG)


def test_records_are_dropped_when_caller_not_entitled(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """decide() repeats the entitlement check, so skipping check_access leaks nothing."""
    ctx = make_context(entitled_customers=frozenset())
    assert engine.decide(make_record(), ctx).rule_id == TENANT_TAG


def test_record_of_the_owner_is_kept(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A record tagged with the connection owner's customer id is released with that tag."""
    decision = engine.decide(make_record(), make_context())
    assert decision.record is not None
    assert decision.record.customer_id == "cust-1"


def test_record_of_another_customer_is_dropped(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A record tagged with any other customer is dropped, even one the caller may see."""
    ctx = make_context(entitled_customers=frozenset({"cust-1", "cust-2"}))
    decision = engine.decide(make_record(customer_id="cust-2"), ctx)
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, TENANT_TAG)
