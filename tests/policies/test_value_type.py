"""Value types: what a frozen dataclass offered, without its construction cost."""

from __future__ import annotations

import dataclasses

from policies import Field, Identifier, IdentifierKind, Subject
from policies.value_type import value_type


def test_equal_values_are_equal_and_hash_alike() -> None:
    """Identifiers key dicts and sets by value, as frozen dataclasses did."""
    one = Identifier(IdentifierKind.EMAIL, "ann@example.com")
    same = Identifier(IdentifierKind.EMAIL, "ann@example.com")
    assert one == same
    assert hash(one) == hash(same)
    assert {one: 1}[same] == 1
    assert Subject((one,)) == Subject((same,))


def test_hash_is_the_frozen_dataclass_hash() -> None:
    """The hash is the one ``@dataclass(frozen=True)`` would compute from the fields."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Frozen:
        kind: str
        value: str

    @value_type
    class Cheap:
        kind: str
        value: str

    assert hash(Frozen("a", "b")) == hash(Cheap("a", "b"))


def test_replace_makes_a_changed_copy() -> None:
    """``dataclasses.replace`` is how a changed value is made; the original stays."""
    original = Field("x", "user.name")
    changed = dataclasses.replace(original, value="y")
    assert (original.value, changed.value) == ("x", "y")


def test_keyword_only_value_types() -> None:
    """``kw_only=True`` works as it does for dataclasses."""

    @value_type(kw_only=True)
    class Named:
        name: str

    assert Named(name="a") == Named(name="a")
