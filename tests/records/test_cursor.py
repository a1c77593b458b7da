"""Signed cursors: pure, no network, no database."""

from __future__ import annotations

import pytest

from gateway.cursor import Binding, CursorKey, PagePosition, same_origin
from gateway.errors import InvalidCursor

KEY = CursorKey(b"k" * 48)
BINDING = Binding("con_1", "comments", {"post_id": "post_1"})


def test_a_cursor_round_trips_its_position() -> None:
    """What is signed is what comes back."""
    for position in (PagePosition(token="abc"), PagePosition(offset=50), PagePosition(link="x")):
        assert position == KEY.open(KEY.sign(BINDING, position), BINDING)


@pytest.mark.parametrize(
    "other",
    [
        Binding("con_2", "comments", {"post_id": "post_1"}),
        Binding("con_1", "posts", {"post_id": "post_1"}),
        Binding("con_1", "comments", {"post_id": "post_2"}),
    ],
)
def test_a_cursor_is_bound_to_connection_resource_and_params(other: Binding) -> None:
    """A cursor used elsewhere is refused."""
    with pytest.raises(InvalidCursor):
        KEY.open(KEY.sign(BINDING, PagePosition(token="abc")), other)


def test_every_changed_character_is_detected() -> None:
    """Flipping any one character of the cursor breaks it."""
    cursor = KEY.sign(BINDING, PagePosition(token="abc"))
    for index, char in enumerate(cursor):
        changed = cursor[:index] + ("A" if char != "A" else "B") + cursor[index + 1 :]
        with pytest.raises(InvalidCursor):
            KEY.open(changed, BINDING)


def test_another_secret_cannot_open_a_cursor() -> None:
    """A cursor is only good for the gateway whose secret signed it."""
    with pytest.raises(InvalidCursor):
        CursorKey(b"z" * 48).open(KEY.sign(BINDING, PagePosition(token="a")), BINDING)


@pytest.mark.parametrize("junk", ["", ".", "a.b.c", "!!!.???", "x" * 5000])
def test_junk_is_an_invalid_cursor(junk: str) -> None:
    """Anything that is not a cursor is invalid-cursor, never a 500."""
    with pytest.raises(InvalidCursor):
        KEY.open(junk, BINDING)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://graph.example/v19/me?after=x", True),
        ("https://graph.example:443/v19/me", True),
        ("http://graph.example/v19/me", False),
        ("https://evil.example/v19/me", False),
        ("https://graph.example.evil.example/", False),
        ("https://user:pw@graph.example/", False),
        ("javascript:alert(1)", False),
    ],
)
def test_next_links_must_stay_on_the_providers_origin(url: str, expected: bool) -> None:
    """RFC 6454 origin equality with the provider's API base URL."""
    assert expected == same_origin(url, "https://graph.example/v19")
