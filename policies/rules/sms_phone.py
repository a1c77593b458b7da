"""Rule ``sms-phone``: phone numbers collected for SMS consent stay put.

Notice: "Phone numbers collected for SMS consent will not be shared with third
parties or affiliates for marketing purposes under any circumstances." and
"SMS consent or phone numbers for the purpose of SMS aren't shared."

We read both passages together at their strictest: such a number is withheld
from every marketing purpose, whoever asks, and from every affiliate or
third-party caller, whatever the purpose. This rule reads no policy data, so
no configuration can turn it off. A caller class we do not recognise is
treated as not internal (fail closed).
"""

from __future__ import annotations

from policies.taxonomy import is_within_any
from policies.vocabulary import CallerClass

RULE_ID = "sms-phone"

# Fides data uses that market to someone: marketing itself, and sales outreach.
MARKETING_PURPOSES = ("marketing", "sales")

REASON = "a phone number collected for SMS consent is never shared or used for marketing"


def withheld(purpose: str, caller_class: object) -> bool:
    """True when SMS-consent phone numbers must be redacted for this purpose and caller."""
    return caller_class != CallerClass.INTERNAL or is_within_any(purpose, MARKETING_PURPOSES)
