"""A resource parameter's value goes into the provider URL's path: the default shape
refuses what would move the request elsewhere on the provider."""

from __future__ import annotations

import pytest

from providers.base import Param

DEFAULT = Param(name="object_id")


@pytest.mark.parametrize("value", ["123", "post_9", "urn:li:share:7", "a.b", "v1.2-x"])
def test_ids_of_the_usual_shapes_are_accepted(value: str) -> None:
    assert DEFAULT.accepts(value)


@pytest.mark.parametrize("value", [".", "..", "a..b", "..x", "x..", "", "a/b", "a b", "x" * 129])
def test_dot_segments_slashes_and_overlong_values_are_refused(value: str) -> None:
    assert not DEFAULT.accepts(value)
