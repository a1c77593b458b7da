"""The privacy notice's rules, one small module each.

Every module names its rule id (what decisions and the audit log say), quotes
the notice passage it enforces, and offers plain functions over plain data.
The engine (``policies.engine``) runs them in a fixed, documented order.
"""

from __future__ import annotations

from policies.rules.no_sale import RULE_ID as NO_SALE
from policies.rules.public_or_direct import RULE_ID as PUBLIC_OR_DIRECT
from policies.rules.purpose import RULE_ID as PURPOSE
from policies.rules.sms_phone import RULE_ID as SMS_PHONE
from policies.rules.suppression import RULE_ID as SUPPRESSION
from policies.rules.tenant_tag import RULE_ID as TENANT_TAG
from policies.rules.under_16 import RULE_ID as UNDER_16

RULE_IDS = (TENANT_TAG, NO_SALE, PURPOSE, PUBLIC_OR_DIRECT, UNDER_16, SUPPRESSION, SMS_PHONE)

__all__ = [
    "NO_SALE",
    "PUBLIC_OR_DIRECT",
    "PURPOSE",
    "RULE_IDS",
    "SMS_PHONE",
    "SUPPRESSION",
    "TENANT_TAG",
    "UNDER_16",
]
