"""Purposes and categories are Fides taxonomy keys; a child key implies its parent."""

from __future__ import annotations

from policies import default_taxonomy, is_within


def test_child_key_is_within_its_ancestors() -> None:
    """A more specific key is within every key on its path, and within itself."""
    assert is_within("essential.service.operations.support", "essential.service")
    assert is_within("essential.service", "essential.service")
    assert is_within("user.contact.email", "user")


def test_sibling_or_prefix_is_not_within() -> None:
    """A key is not within a sibling, a descendant, or a key that merely shares a prefix."""
    assert not is_within("user.contact", "user.contact.email")
    assert not is_within("user.content", "user.contact")
    assert not is_within("essential.services", "essential.service")


def test_fideslang_parents_are_path_prefixes() -> None:
    """Every Fides key's parent is its path minus the last segment, so string ancestry is exact."""
    from fideslang.default_taxonomy import DEFAULT_TAXONOMY

    for item in [*DEFAULT_TAXONOMY.data_use, *DEFAULT_TAXONOMY.data_category]:
        parent = item.fides_key.rpartition(".")[0] or None
        assert parent == item.parent_key


def test_known_and_unknown_keys() -> None:
    """Keys of the shipped taxonomy are usable; others and deprecated ones are reported."""
    taxonomy = default_taxonomy()
    assert taxonomy.purpose_problem("marketing.communications") is None
    assert taxonomy.category_problem("user.contact.email") is None
    assert "unknown" in (taxonomy.purpose_problem("marketing.spam") or "")
    assert "personalize.content.profiling" in (
        taxonomy.purpose_problem("personalize.profiling") or ""
    )
