"""Immutable value types without the construction cost of frozen dataclasses.

A ``@dataclass(frozen=True)`` refuses assignment in ``__setattr__``, so its
generated ``__init__`` must set every field through ``object.__setattr__``.
Counted under callgrind on this machine (Python 3.11), that makes a 3-field
frozen slotted dataclass cost about 6,200 instructions to build against 2,400
for the same class unfrozen, some 1,300 per field; a page of records builds
several hundred such objects (fields, identifiers, subjects, records,
decisions), about 5% of a records request.

:func:`value_type` makes a slotted dataclass with field equality and the hash
a frozen one would have, and tells type checkers it is frozen (PEP 681's
``frozen_default``): assigning a field is an error under ``mypy --strict``,
which checks every package that builds or reads these types. Nothing refuses
the assignment at run time; instances are shared (one ``Decision`` for every
record a rule drops, kept records handed on unchanged), so the contract is
that nobody mutates them, and the type checker is what holds everyone to it.
Use ``dataclasses.replace`` for a changed copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


@overload
def value_type(cls: type[_T], /) -> type[_T]: ...
@overload
def value_type(*, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]: ...
@dataclass_transform(frozen_default=True)
def value_type(
    cls: type[_T] | None = None, /, *, kw_only: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``@dataclass(frozen=True, slots=True)`` to readers and type checkers, built cheaply."""

    def make(target: type[_T]) -> type[_T]:
        # unsafe_hash: the field hash frozen=True would give, which eq=True alone drops.
        return dataclass(slots=True, unsafe_hash=True, kw_only=kw_only)(target)

    return make if cls is None else make(cls)
