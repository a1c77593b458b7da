"""Linkgate's privacy policies: the notice's rules as code.

Build one :class:`PolicyEngine` at start-up from :func:`load_policy`, one
:class:`AccessContext` per request; call :meth:`PolicyEngine.check_access`
before fetching and :meth:`PolicyEngine.decide_page` on what came back.
"""

from __future__ import annotations

from policies.context import AccessContext
from policies.decision import Decision, Outcome, PageDecision, RedactedField, Redaction
from policies.engine import PolicyEngine
from policies.errors import PolicyConfigError
from policies.identifiers import (
    DEFAULT_REGION,
    InvalidIdentifier,
    email_identifier,
    handle_identifier,
    normalize_email,
    normalize_handle,
    normalize_phone,
    normalize_provider_user_id,
    phone_identifier,
    provider_user_identifier,
)
from policies.policy_data import Policy, PurposeRule, Retention, load_policy
from policies.rules import (
    NO_SALE,
    PUBLIC_OR_DIRECT,
    PURPOSE,
    RULE_IDS,
    SMS_PHONE,
    SUPPRESSION,
    TENANT_TAG,
    UNDER_16,
)
from policies.taxonomy import Taxonomy, default_taxonomy, is_within
from policies.value_type import value_type
from policies.vocabulary import (
    AgeHint,
    CallerClass,
    Field,
    Identifier,
    IdentifierKind,
    JSONValue,
    Record,
    Subject,
    Visibility,
)

__all__ = [
    "DEFAULT_REGION",
    "NO_SALE",
    "PUBLIC_OR_DIRECT",
    "PURPOSE",
    "RULE_IDS",
    "SMS_PHONE",
    "SUPPRESSION",
    "TENANT_TAG",
    "UNDER_16",
    "AccessContext",
    "AgeHint",
    "CallerClass",
    "Decision",
    "Field",
    "Identifier",
    "IdentifierKind",
    "InvalidIdentifier",
    "JSONValue",
    "Outcome",
    "PageDecision",
    "Policy",
    "PolicyConfigError",
    "PolicyEngine",
    "PurposeRule",
    "Record",
    "RedactedField",
    "Redaction",
    "Retention",
    "Subject",
    "Taxonomy",
    "Visibility",
    "default_taxonomy",
    "email_identifier",
    "handle_identifier",
    "is_within",
    "load_policy",
    "normalize_email",
    "normalize_handle",
    "normalize_phone",
    "normalize_provider_user_id",
    "phone_identifier",
    "provider_user_identifier",
    "value_type",
]
