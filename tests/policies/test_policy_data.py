"""Policy data: the notice's allowances, loaded and validated once, tightened only.

Notice, DATA RETENTION: "We will retain your personal information for no
longer than is necessary"; "For our End Users, we do not use the data ... for
marketing without your consent"; "We will not rent or sell personal
information about you."
"""

from __future__ import annotations

from typing import Any

import pytest

from policies import Policy, PolicyConfigError, load_policy


def problems_of(overrides: dict[str, Any]) -> str:
    with pytest.raises(PolicyConfigError) as caught:
        load_policy(overrides)
    return str(caught.value)


def test_packaged_policy_allows_the_notice_purposes(policy: Policy) -> None:
    """Service, support, communications, security, fraud, legal, marketing, analytics pass."""
    for purpose in [
        "essential.service",
        "essential.service.operations.support",
        "essential.service.notifications.email",
        "essential.service.security",
        "essential.fraud_detection",
        "essential.legal_obligation",
        "marketing.communications.email",
        "analytics.reporting",
    ]:
        assert policy.allows(purpose), purpose


def test_packaged_policy_refuses_other_purposes(policy: Policy) -> None:
    """Purposes the End User passages do not name are refused, sales and rentals above all."""
    for purpose in [
        "essential.service.payment_processing",
        "marketing.advertising.third_party.targeted",
        "third_party_sharing",
        "personalize",
        "train_ai_system",
        "sales",
    ]:
        assert not policy.allows(purpose), purpose


def test_marketing_requires_consent_and_analytics_pseudonymizes(policy: Policy) -> None:
    """Marketing needs consent; analytics gets pseudonyms (flags in the packaged data)."""
    marketing = policy.rule_for("marketing.communications.sms")
    analytics = policy.rule_for("analytics.reporting.content_performance")
    assert marketing is not None
    assert marketing.requires_consent
    assert analytics is not None
    assert analytics.pseudonymize


def test_every_entry_cites_the_notice(policy: Policy) -> None:
    """Each purpose and retention entry carries the passage it rests on."""
    assert all(rule.notice for rule in policy.purposes.values())
    assert all(entry.notice for entry in policy.retention.values())
    assert policy.no_sale_notice


def test_retention_uses_the_most_specific_entry(policy: Policy) -> None:
    """A category's retention is its most specific entry's; children's data is not kept."""
    assert policy.retention_days("user.contact.email") == 30
    assert policy.retention_days("user.childrens") == 0
    assert policy.retention_days("user.authorization.credentials") == 7


def test_stricter_override_is_applied() -> None:
    """An override may withdraw a purpose, narrow categories and shorten retention."""
    policy = load_policy(
        {
            "purposes": {
                "marketing.communications": {"allowed": False},
                "essential.service": {"categories": ["user.content"]},
                "essential.service.authentication": {"allowed": False},
            },
            "retention": {"user.content": {"days": 7}},
            "no_sale": {"purposes": ["personalize"]},
        }
    )
    service = policy.rule_for("essential.service")
    assert not policy.allows("marketing.communications.email")
    assert not policy.allows("essential.service.authentication")
    assert service is not None
    assert service.may_receive("user.content.public")
    assert not service.may_receive("user.name")
    assert policy.retention_days("user.content.private") == 7
    assert policy.is_sale("personalize.content")


def test_override_adding_a_purpose_is_rejected() -> None:
    """A purpose the notice does not allow cannot be switched on by configuration."""
    assert "looser" in problems_of({"purposes": {"personalize": {"categories": ["user.name"]}}})


def test_override_widening_categories_is_rejected() -> None:
    """A purpose cannot receive a category the packaged data does not give it."""
    message = problems_of({"purposes": {"analytics.reporting": {"categories": ["user.name"]}}})
    assert "looser" in message
    assert "user.name" in message


def test_override_lengthening_retention_is_rejected() -> None:
    """Retention can only be shortened."""
    assert "looser" in problems_of({"retention": {"user.contact": {"days": 3650}}})


@pytest.mark.parametrize(
    ("purpose", "flag"),
    [("marketing.communications", "requires_consent"), ("analytics.reporting", "pseudonymize")],
)
def test_override_turning_off_a_safeguard_is_rejected(purpose: str, flag: str) -> None:
    """Consent for marketing and pseudonyms for analytics cannot be configured away."""
    assert "cannot be turned off" in problems_of({"purposes": {purpose: {flag: False}}})


def test_unknown_keys_are_rejected_one_line_each() -> None:
    """Unknown Fides keys and settings are configuration errors, one line per problem."""
    with pytest.raises(PolicyConfigError) as caught:
        load_policy(
            {
                "purposes": {"essential.servise": {"allowed": False}},
                "retention": {"user.emial": {"days": 1}},
                "colour": "blue",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 3
    assert any("essential.servise" in line for line in problems)
    assert any("user.emial" in line for line in problems)
    assert any("'colour'" in line for line in problems)


def test_deprecated_key_names_its_replacement() -> None:
    """A deprecated Fides key is refused with the key that replaces it."""
    message = problems_of({"purposes": {"personalize.profiling": {"allowed": False}}})
    assert "personalize.content.profiling" in message


def test_no_sale_purposes_cannot_be_removed() -> None:
    """Operators may add never-grantable purposes; the packaged ones always remain."""
    policy = load_policy({"no_sale": {"purposes": []}})
    assert policy.is_sale("third_party_sharing")
