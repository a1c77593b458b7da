"""The package's public surface is explicit, sorted and complete."""

from __future__ import annotations

import policies
from policies import RULE_IDS


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted (constants first, as ruff sorts it) and every name exists."""
    names = policies.__all__
    assert sorted(names, key=lambda n: (not n.isupper(), n)) == names
    assert all(hasattr(policies, name) for name in names)


def test_rule_ids_are_the_designed_ones() -> None:
    """Rule ids are exactly the ones DESIGN.md names (the audit log stores them)."""
    expected = {
        "tenant-tag",
        "public-or-direct",
        "purpose",
        "sms-phone",
        "under-16",
        "suppression",
        "no-sale",
    }
    assert set(RULE_IDS) == expected
