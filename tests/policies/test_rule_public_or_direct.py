"""Rule public-or-direct.

Notice: "With respect to social media, only personal information that an End
User has directly provided to the relevant Officium Solutions LLC customer or
that an End User has designated as publicly accessible will be accessed or
stored."
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from policies import PUBLIC_OR_DIRECT, AccessContext, Outcome, PolicyEngine, Record, Visibility


@pytest.mark.parametrize("visibility", [Visibility.PUBLIC, Visibility.DIRECT])
def test_public_and_direct_are_kept(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
    visibility: Visibility,
) -> None:
    """Public posts and items the End User gave the customer directly are released."""
    assert engine.decide(make_record(visibility=visibility), make_context()).allowed


@pytest.mark.parametrize(
    "visibility", [Visibility.PRIVATE, Visibility.RESTRICTED, Visibility.UNKNOWN, "friends", None]
)
def test_anything_else_is_dropped(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
    visibility: object,
) -> None:
    """Private, restricted, unknown and unparsed visibility are dropped: fail closed."""
    decision = engine.decide(make_record(visibility=visibility), make_context())
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, PUBLIC_OR_DIRECT)
