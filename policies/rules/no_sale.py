"""Rule ``no-sale``: no purpose that sells or rents data is ever granted.

Notice: "We will not rent or sell personal information about you."

The never-grantable purposes are policy data (``[no_sale]`` in
``policies/data/policy.toml``); operators may add to them, never remove.
"""

from __future__ import annotations

from collections.abc import Iterable

from policies.taxonomy import is_within_any

RULE_ID = "no-sale"

REASON = "the purpose amounts to selling or renting personal information"


def is_sale(purpose: str, no_sale: Iterable[str]) -> bool:
    """True when ``purpose`` is, or is a kind of, a sale or rental purpose."""
    return is_within_any(purpose, no_sale)
