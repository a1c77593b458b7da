"""Rule no-sale.

Notice: "We will not rent or sell personal information about you."
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from policies import NO_SALE, PURPOSE, AccessContext, Outcome, PolicyEngine, load_policy


@pytest.mark.parametrize(
    "purpose",
    [
        "third_party_sharing",
        "third_party_sharing.legal_obligation",
        "marketing.advertising.third_party.targeted",
        "marketing.advertising.first_party.targeted",
    ],
)
def test_sale_purposes_are_refused_even_when_granted(
    engine: PolicyEngine, make_context: Callable[..., AccessContext], purpose: str
) -> None:
    """A purpose that sells, rents or hands data to third parties is refused, granted or not."""
    ctx = make_context(purpose=purpose, granted_purposes=frozenset({purpose}))
    decision = engine.check_access(ctx)
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, NO_SALE)


def test_sale_purposes_cannot_be_granted(engine: PolicyEngine) -> None:
    """A service cannot be created with a sale purpose among its grants."""
    decision = engine.check_grant(["essential.service", "third_party_sharing"])
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, NO_SALE)


def test_allowed_purposes_can_be_granted(engine: PolicyEngine) -> None:
    """Purposes the notice allows can be granted."""
    assert engine.check_grant(["essential.service", "marketing.communications"]).allowed


def test_unknown_purpose_cannot_be_granted(engine: PolicyEngine) -> None:
    """A purpose that is no Fides data use cannot be granted."""
    assert engine.check_grant(["essential.servise"]).rule_id == PURPOSE


def test_operator_may_add_never_grantable_purposes(
    make_context: Callable[..., AccessContext],
) -> None:
    """An operator-added no-sale purpose is refused as a sale."""
    engine = PolicyEngine(load_policy({"no_sale": {"purposes": ["essential.service.security"]}}))
    ctx = make_context(purpose="essential.service.security")
    assert engine.check_access(ctx).rule_id == NO_SALE


def test_sale_purpose_cannot_be_allowed_by_policy_data(
    make_context: Callable[..., AccessContext],
) -> None:
    """Marking an allowed purpose as no-sale makes it refused, never the other way round."""
    engine = PolicyEngine(load_policy({"no_sale": {"purposes": ["analytics"]}}))
    assert not engine.check_access(make_context(purpose="analytics.reporting")).allowed
