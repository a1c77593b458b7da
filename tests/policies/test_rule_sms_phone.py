"""Rule sms-phone.

Notice: "Phone numbers collected for SMS consent will not be shared with third
parties or affiliates for marketing purposes under any circumstances." and
"SMS consent or phone numbers for the purpose of SMS aren't shared."
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from policies import (
    SMS_PHONE,
    AccessContext,
    CallerClass,
    Field,
    PolicyEngine,
    Record,
    Subject,
    email_identifier,
    load_policy,
    phone_identifier,
)

SMS_PHONE_FIELD = Field("(212) 555-0100", "user.contact.phone_number", sms_consent=True)
ANN = Subject(identifiers=(email_identifier("ann@example.com"), phone_identifier("2125550100")))


def record_with_sms_phone(make_record: Callable[..., Record]) -> Record:
    return make_record(
        subjects=(ANN,),
        data={"name": Field("Ann", "user.name"), "mobile": SMS_PHONE_FIELD},
    )


@pytest.mark.parametrize("caller", [CallerClass.AFFILIATE, CallerClass.THIRD_PARTY, "partner"])
def test_withheld_from_affiliates_and_third_parties(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
    caller: CallerClass,
) -> None:
    """Affiliates, third parties and unrecognised callers never get an SMS-consent phone."""
    decision = engine.decide(record_with_sms_phone(make_record), make_context(caller_class=caller))
    assert decision.record is not None
    assert "mobile" not in decision.record.data
    assert ("mobile", SMS_PHONE) in [(r.field, r.rule_id) for r in decision.redactions]


def test_withheld_from_marketing_even_internally(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """Marketing never gets it, even with consent and an internal caller; nor the same number
    as a subject identifier."""
    ctx = make_context(purpose="marketing.communications.sms", consented=[ANN.identifiers[0]])
    decision = engine.decide(record_with_sms_phone(make_record), ctx)
    assert decision.record is not None
    assert "mobile" not in decision.record.data
    assert [i.value for i in decision.record.subjects[0].identifiers] == ["ann@example.com"]
    assert {SMS_PHONE} == {r.rule_id for r in decision.redactions}


def test_released_to_internal_service_use(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """An internal caller providing the service (e.g. sending the SMS) still gets it."""
    decision = engine.decide(record_with_sms_phone(make_record), make_context())
    assert decision.record is not None
    assert decision.record.data["mobile"] == SMS_PHONE_FIELD


def test_ordinary_phone_reaches_consented_marketing(
    engine: PolicyEngine,
    make_context: Callable[..., AccessContext],
    make_record: Callable[..., Record],
) -> None:
    """A phone number not collected for SMS consent follows the ordinary purpose rules."""
    record = make_record(data={"phone": Field("+12125550100", "user.contact.phone_number")})
    ctx = make_context(purpose="marketing.communications", consented=[ANN.identifiers[0]])
    decision = engine.decide(record, ctx)
    assert decision.record is not None
    assert "phone" in decision.record.data


def test_no_configuration_turns_it_off(
    make_context: Callable[..., AccessContext], make_record: Callable[..., Record]
) -> None:
    """Even the loosest configuration the loader accepts withholds it from marketing."""
    engine = PolicyEngine(load_policy({"purposes": {}, "retention": {}}))
    ctx = make_context(purpose="marketing.communications", consented=[ANN.identifiers[0]])
    decision = engine.decide(record_with_sms_phone(make_record), ctx)
    assert decision.record is not None
    assert "mobile" not in decision.record.data
