"""Rule ``public-or-direct``: only public or directly provided social data leaves.

Notice: "With respect to social media, only personal information that an End
User has directly provided to the relevant Officium Solutions LLC customer or
that an End User has designated as publicly accessible will be accessed or
stored."

Private, restricted (friends-only, confidential) and unknown visibility are
dropped: when the provider does not tell us, we cannot show the End User chose
to share, so we fail closed.
"""

from __future__ import annotations

from policies.vocabulary import Visibility

RULE_ID = "public-or-direct"

RELEASABLE = frozenset({Visibility.PUBLIC, Visibility.DIRECT})

REASON = "neither designated public by the End User nor directly provided to the customer"


def releasable(visibility: object) -> bool:
    """True only for ``public`` and ``direct``; anything else, even unparsed, is not."""
    return visibility in RELEASABLE
