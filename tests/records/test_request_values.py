"""The values built afresh for every records request are cheap to build."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.records.service import RecordsPage, RecordsQuery, _Request
from gateway.subject_controls import PageControls
from policies import AccessContext
from providers.base import NormalizeContext

PER_REQUEST = [AccessContext, NormalizeContext, PageControls, RecordsPage, RecordsQuery, _Request]


@pytest.mark.parametrize("cls", PER_REQUEST, ids=lambda cls: cls.__name__)
def test_built_without_frozen_setattr(cls: type) -> None:
    """Value types (policies.value_type), not frozen dataclasses: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, about 1,300
    instructions a field, and these are built on every request."""
    assert dataclasses.is_dataclass(cls)
    assert "__setattr__" not in cls.__dict__
    assert cls.__hash__ is not None  # still hashable by value, as the frozen dataclass was
