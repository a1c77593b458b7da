"""Rule suppression.

Notice, YOUR PRIVACY RIGHTS: "Objection: You can let us know that you object to
the collection or use of your personal data for certain purposes. Erasure: You
can request that we erase some or all of your personal data ... Restriction of
Processing ... Withdrawal of Consent: ... you have the right to change your
mind at any time."
"""

from __future__ import annotations

from collections.abc import Callable

from policies import (
    SUPPRESSION,
    AccessContext,
    Outcome,
    PolicyEngine,
    Record,
    Subject,
    email_identifier,
    handle_identifier,
    provider_user_identifier,
)

BOB = Subject(identifiers=(handle_identifier("x", "bob"), provider_user_identifier("x", "2")))


def test_suppressed_subject_is_dropped(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A record about a suppressed End User is dropped, matched by any of their identifiers."""
    ctx = make_context(suppressed=[provider_user_identifier("x", "1")])
    decision = engine.decide(make_record(), ctx)
    assert (decision.outcome, decision.rule_id) == (Outcome.DROP, SUPPRESSION)


def test_normalized_identifier_matches(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """An erasure filed as ' Ann@Example.com' suppresses the record naming ann@example.com."""
    ctx = make_context(suppressed=[email_identifier(" Ann@Example.com")])
    assert engine.decide(make_record(), ctx).rule_id == SUPPRESSION


def test_any_suppressed_subject_drops_the_record(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Every identifier of every subject is checked, not only the author's."""
    record = make_record(subjects=(*make_record().subjects, BOB))
    ctx = make_context(suppressed=[handle_identifier("x", "@BOB")])
    assert engine.decide(record, ctx).rule_id == SUPPRESSION


def test_unsuppressed_subject_is_kept(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Records about other End Users are unaffected."""
    ctx = make_context(suppressed=[handle_identifier("x", "bob")])
    assert engine.decide(make_record(), ctx).allowed


def test_restriction_for_one_purpose_leaves_others(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """An objection to one purpose drops records for that purpose only."""
    suppressed = [email_identifier("ann@example.com")]
    objected = make_context(suppressed=suppressed, suppressed_for="essential.service")
    other = make_context(
        suppressed=suppressed,
        suppressed_for="essential.service",
        purpose="essential.service.security",
    )
    assert engine.decide(make_record(), objected).rule_id == SUPPRESSION
    assert engine.decide(make_record(), other).allowed


def test_interleaved_requests_are_each_judged_with_their_own_context(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Requests that check access in turn, then decide in turn, keep their own suppressions."""
    record = make_record(subjects=(BOB,))
    suppressing = make_context(suppressed=[handle_identifier("x", "bob")])
    others = [make_context() for _ in range(3)]
    for ctx in [suppressing, *others]:  # each request checks access before any decides
        engine.check_access(ctx)

    decisions = [engine.decide_page([record], ctx) for ctx in [suppressing, *others]]

    assert [page.dropped for page in decisions] == [{SUPPRESSION: 1}, {}, {}, {}]
