"""Purposes and data categories: the keys of the Fides privacy taxonomy.

Purposes are Fides *data use* keys (``essential.service``, ``marketing.communications``)
and field categories are Fides *data category* keys (``user.contact.email``). The
``fideslang`` package ships the default taxonomy as Python objects in
``fideslang.default_taxonomy.DEFAULT_TAXONOMY``; we read it once and keep only
the keys and their parents, which is all the rules need.

Keys are dotted paths and a child key implies its parent: a purpose of
``essential.service.operations.support`` *is* ``essential.service``, and a field
of category ``user.contact.email`` *is* ``user.contact``. Fides guarantees that
a key's parent is its path minus the last segment (checked in the tests), so
ancestry is a string comparison, cheap enough for every field of every record.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fideslang.models import DataCategory, DataUse


def is_within(key: str, ancestor: str) -> bool:
    """True when ``key`` is ``ancestor`` or one of its descendants."""
    size = len(ancestor)
    if len(key) == size:
        return key == ancestor
    return len(key) > size and key[size] == "." and key.startswith(ancestor)


def is_within_any(key: str, ancestors: Iterable[str]) -> bool:
    """True when ``key`` is within at least one of ``ancestors``."""
    return any(is_within(key, ancestor) for ancestor in ancestors)


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """The known keys; a deprecated key maps to a note saying what replaces it."""

    data_uses: Mapping[str, str | None]
    data_categories: Mapping[str, str | None]

    def purpose_problem(self, key: str) -> str | None:
        """Why ``key`` is not a usable purpose, or None when it is."""
        return _problem(key, self.data_uses, "data use (purpose)")

    def category_problem(self, key: str) -> str | None:
        """Why ``key`` is not a usable data category, or None when it is."""
        return _problem(key, self.data_categories, "data category")


def _problem(key: object, known: Mapping[str, str | None], what: str) -> str | None:
    if not isinstance(key, str) or key not in known:
        return f"unknown Fides {what} {key!r}"
    deprecation = known[key]
    if deprecation is not None:
        return f"Fides {what} {key!r} is {deprecation}"
    return None


@functools.cache
def default_taxonomy() -> Taxonomy:
    """The taxonomy shipped with the installed ``fideslang`` (read once per process)."""
    # Imported here: fideslang brings pydantic, which the record path never needs.
    from fideslang.default_taxonomy import DEFAULT_TAXONOMY

    def index(items: Iterable[DataUse | DataCategory]) -> dict[str, str | None]:
        keys: dict[str, str | None] = {}
        for item in items:
            note = None
            if item.version_deprecated:
                note = f"deprecated since fideslang {item.version_deprecated}"
                if item.replaced_by:
                    note += f"; use {item.replaced_by!r}"
            keys[item.fides_key] = note
        return keys

    return Taxonomy(
        data_uses=index(DEFAULT_TAXONOMY.data_use),
        data_categories=index(DEFAULT_TAXONOMY.data_category),
    )
