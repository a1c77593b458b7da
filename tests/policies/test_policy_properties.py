"""Properties that hold for any record, purpose and caller.

Each property restates a notice promise: only public or directly provided data
leaves; SMS-consent phones are never shared with affiliates or third parties
nor used for marketing; data is released only under the customer it was
collected for; a suppressed End User's records are never released.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    AccessContext,
    AgeHint,
    CallerClass,
    Field,
    Identifier,
    Outcome,
    PolicyEngine,
    Record,
    RedactedField,
    Subject,
    Visibility,
    email_identifier,
    handle_identifier,
    load_policy,
    phone_identifier,
    provider_user_identifier,
)

ENGINE = PolicyEngine(load_policy())
OWNER = "cust-1"
IDENTIFIERS = [
    email_identifier("ann@example.com"),
    email_identifier("bob@example.com"),
    phone_identifier("2125550100"),
    phone_identifier("2125550199"),
    handle_identifier("x", "ann"),
    provider_user_identifier("facebook", "42"),
]
CATEGORIES = [
    "user.name",
    "user.contact.email",
    "user.contact.phone_number",
    "user.content.public",
    "user.content.private",
    "user.location.precise",
    "user.unique_id",
    "user.childrens",
    "user.health_and_medical",
    "user.unknown_thing",
]
PURPOSES = [
    "essential.service",
    "essential.service.operations.support",
    "essential.service.security",
    "essential.legal_obligation",
    "marketing.communications",
    "marketing.communications.sms",
    "analytics.reporting",
    "third_party_sharing",
    "sales",
    "personalize",
]
MARKETING = ("marketing", "sales")

identifiers = st.sampled_from(IDENTIFIERS)
ages = st.none() | st.builds(
    AgeHint,
    under_16=st.none() | st.booleans(),
    birth_date=st.none() | st.dates(min_value=date(1940, 1, 1), max_value=date(2025, 1, 1)),
    age_range_max=st.none() | st.integers(min_value=10, max_value=99),
)
subjects = st.builds(
    Subject,
    identifiers=st.lists(identifiers, min_size=0, max_size=3).map(tuple),
    age=ages,
)
fields = st.builds(
    Field,
    value=st.sampled_from(["(212) 555-0100", "+12125550199", "hello", "x"]),
    category=st.sampled_from(CATEGORIES),
    sms_consent=st.booleans(),
)
records = st.builds(
    Record,
    id=st.text(min_size=1, max_size=4),
    customer_id=st.sampled_from([OWNER, "cust-2", ""]),
    connection_id=st.just("conn-1"),
    provider=st.just("x"),
    resource=st.just("mentions"),
    visibility=st.sampled_from([*Visibility, "friends", None]),
    subjects=st.lists(subjects, max_size=3).map(tuple),
    data=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), fields, max_size=4),
)


@st.composite
def contexts(draw: st.DrawFn) -> tuple[AccessContext, frozenset[Identifier]]:
    suppressed = frozenset(draw(st.sets(identifiers, max_size=2)))
    consented = frozenset(draw(st.sets(identifiers, max_size=4)))
    ctx = AccessContext(
        service_id="svc",
        caller_class=draw(st.sampled_from(list(CallerClass))),
        granted_purposes=frozenset(draw(st.sets(st.sampled_from(PURPOSES), min_size=1))),
        entitled_customers=frozenset(draw(st.sets(st.sampled_from([OWNER, "cust-2"])))),
        connection_customer_id=OWNER,
        purpose=draw(st.sampled_from(PURPOSES)),
        now=datetime(2025, 6, 15, tzinfo=UTC),
        consented=consented.__contains__,
        suppressed=lambda identifier, _purpose: identifier in suppressed,
        pseudonymize=lambda identifier: f"p{hash(identifier) & 0xFFFF:x}",
    )
    return ctx, suppressed


@settings(max_examples=200)
@given(page=st.lists(records, max_size=8), drawn=contexts())
def test_only_public_or_direct_records_are_kept(
    page: list[Record], drawn: tuple[AccessContext, frozenset[Identifier]]
) -> None:
    """No kept record has a visibility other than public or direct."""
    result = ENGINE.decide_page(page, drawn[0])
    assert all(r.visibility in {Visibility.PUBLIC, Visibility.DIRECT} for r in result.kept)


@settings(max_examples=200)
@given(page=st.lists(records, max_size=8), drawn=contexts())
def test_sms_phone_never_reaches_marketing_or_outside_callers(
    page: list[Record], drawn: tuple[AccessContext, frozenset[Identifier]]
) -> None:
    """No SMS-consent phone reaches a marketing purpose, an affiliate or a third party."""
    ctx = drawn[0]
    result = ENGINE.decide_page(page, ctx)
    outside = ctx.caller_class is not CallerClass.INTERNAL
    marketing = ctx.purpose.split(".")[0] in MARKETING
    if outside or marketing:
        assert not any(f.sms_consent for r in result.kept for f in r.data.values())


@settings(max_examples=200)
@given(page=st.lists(records, max_size=8), drawn=contexts())
def test_kept_records_belong_to_the_connection_owner(
    page: list[Record], drawn: tuple[AccessContext, frozenset[Identifier]]
) -> None:
    """Every kept record carries the connection owner's customer id, for an entitled caller."""
    ctx = drawn[0]
    result = ENGINE.decide_page(page, ctx)
    assert all(r.customer_id == ctx.connection_customer_id for r in result.kept)
    if result.kept:
        assert ctx.connection_customer_id in ctx.entitled_customers


@settings(max_examples=200)
@given(page=st.lists(records, max_size=8), drawn=contexts())
def test_suppressed_subjects_are_never_kept(
    page: list[Record], drawn: tuple[AccessContext, frozenset[Identifier]]
) -> None:
    """No record naming a suppressed identifier is kept."""
    ctx, suppressed = drawn
    decisions = [ENGINE.decide(record, ctx) for record in page]
    for record, decision in zip(page, decisions, strict=True):
        if suppressed & {i for s in record.subjects for i in s.identifiers}:
            assert not decision.allowed
    assert sum(d.allowed for d in decisions) == len(ENGINE.decide_page(page, ctx).kept)


@settings(max_examples=300)
@given(page=st.lists(records, max_size=8), drawn=contexts())
def test_a_page_decision_sums_up_its_records_decisions(
    page: list[Record], drawn: tuple[AccessContext, frozenset[Identifier]]
) -> None:
    """Kept records, drops per rule and located redactions: each record's own decision."""
    ctx = drawn[0]
    decisions = [ENGINE.decide(record, ctx) for record in page]

    result = ENGINE.decide_page(page, ctx)

    assert result.kept == [d.record for d in decisions if d.record is not None]
    assert result.dropped == dict(
        Counter(d.rule_id for d in decisions if d.outcome is Outcome.DROP)
    )
    assert result.redacted == [
        RedactedField(record.id, redaction.field, redaction.rule_id)
        for record, decision in zip(page, decisions, strict=True)
        for redaction in decision.redactions
    ]
    assert all(
        d.reason == f"{len(d.redactions)} value(s) withheld"
        for d in decisions
        if d.outcome is Outcome.REDACT
    )
