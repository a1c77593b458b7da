"""Rule purpose.

Notice, End User Personal Data: "Provide Officium Solutions LLC Services to the
Officium Solutions LLC customer ... Communicate with a customer; Respond to
requests for support; Detect and prevent spam or fraudulent activity"; "For our
End Users, we do not use the data we collect about you when you use our
services for marketing without your consent."
"""

from __future__ import annotations

from collections.abc import Callable

from policies import (
    PURPOSE,
    AccessContext,
    Field,
    IdentifierKind,
    Outcome,
    PolicyEngine,
    Record,
    email_identifier,
)

ANN_EMAIL = email_identifier("ann@example.com")


def test_granted_allowed_purpose_may_proceed(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A purpose granted to the caller (through its parent) and allowed by the notice proceeds."""
    ctx = make_context(purpose="essential.service.operations.support")
    assert engine.check_access(ctx).allowed


def test_purpose_not_granted_is_refused(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A caller may use only the purposes it was granted."""
    ctx = make_context(granted_purposes=frozenset({"analytics"}))
    assert (
        engine.check_access(ctx).outcome,
        engine.check_access(ctx).rule_id,
    ) == (Outcome.DROP, PURPOSE)


def test_purpose_the_notice_does_not_allow_is_refused(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A granted purpose the notice does not allow for End User data is refused."""
    ctx = make_context(purpose="personalize.content", granted_purposes=frozenset({"personalize"}))
    assert engine.check_access(ctx).rule_id == PURPOSE


def test_unknown_purpose_is_refused(
    engine: PolicyEngine, make_context: Callable[..., AccessContext]
) -> None:
    """A purpose that is no Fides key is refused even if it looks like a child of a grant."""
    ctx = make_context(purpose="essential.service.whatever")
    assert engine.check_access(ctx).rule_id == PURPOSE


def test_field_of_a_category_the_purpose_may_not_receive_is_redacted(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Support does not receive location; the field is redacted by purpose, the rest kept."""
    record = make_record(
        data={"text": Field("hi", "user.content"), "at": Field("x", "user.location")}
    )
    decision = engine.decide(record, make_context(purpose="essential.service.operations.support"))
    assert decision.outcome == Outcome.REDACT
    assert [(r.field, r.rule_id) for r in decision.redactions] == [("at", PURPOSE)]
    assert decision.record is not None
    assert list(decision.record.data) == ["text"]


def test_unclassified_field_is_redacted(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A field whose category is no Fides key is redacted: fail closed."""
    record = make_record(data={"odd": Field("x", "user.mystery")})
    assert [r.rule_id for r in engine.decide(record, make_context()).redactions] == [PURPOSE]


def test_marketing_with_consent_is_kept(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Marketing gets the record of an End User who consented, limited to contact data."""
    ctx = make_context(purpose="marketing.communications.email", consented=[ANN_EMAIL])
    decision = engine.decide(make_record(), ctx)
    assert decision.record is not None
    assert list(decision.record.data) == ["author"]
    kinds = [i.kind for s in decision.record.subjects for i in s.identifiers]
    assert kinds == [IdentifierKind.EMAIL]


def test_marketing_without_consent_is_dropped(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Marketing never sees an End User who has not consented, nor a record naming nobody."""
    ctx = make_context(purpose="marketing.communications")
    assert engine.decide(make_record(), ctx).rule_id == PURPOSE
    assert engine.decide(make_record(subjects=()), ctx).rule_id == PURPOSE


def test_analytics_sees_pseudonyms_not_identifiers(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Analytics gets keyed pseudonyms instead of identifiers, and no direct identifiers."""
    decision = engine.decide(make_record(), make_context(purpose="analytics.reporting"))
    assert decision.record is not None
    identifiers = [i for s in decision.record.subjects for i in s.identifiers]
    assert {IdentifierKind.PSEUDONYM} == {i.kind for i in identifiers}
    assert ANN_EMAIL.value not in {i.value for i in identifiers}
    assert list(decision.record.data) == ["text"]


def test_page_reports_redactions_and_released_categories(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A page sums up kept records, redactions by field and rule, and categories released."""
    page = engine.decide_page([make_record()], make_context(purpose="analytics.reporting"))
    assert len(page.kept) == 1
    assert [(r.record_id, r.field, r.rule_id) for r in page.redacted] == [
        ("rec-1", "author", PURPOSE)
    ]
    assert page.redacted_counts == {PURPOSE: 1}
    assert {"user.content.public", "user.unique_id.pseudonymous"} == page.categories_released
