"""Reading providers' JSON bodies: strict JSON, numbers exactly as sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream._json_text import parse_json

_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(_JSON_VALUES, st.booleans())
def test_any_json_text_reads_as_json_loads_reads_it(value: Any, ascii_only: bool) -> None:
    """Whatever JSON a provider sends, the value is the one json.loads gives."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json.loads(body) == parse_json(body)


@pytest.mark.parametrize(
    "number",
    [
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        123456789012345678901234567890,
        -123456789012345678901234567890,
    ],
)
def test_integers_are_exact_whatever_their_size(number: int) -> None:
    """An id sent as a JSON number past 64 bits is not rounded to a double."""
    parsed = parse_json(b'{"data": [{"id": %d, "n": [1, %d]}]}' % (number, number))
    assert parsed == {"data": [{"id": number, "n": [1, number]}]}
    assert type(parsed["data"][0]["id"]) is int


def test_duplicate_names_keep_the_last_value_as_json_loads_does() -> None:
    """RFC 8259 §4 leaves duplicate names open; the last one wins, as before."""
    assert parse_json(b'{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN, "b": [Infinity, -Infinity], "c": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
        '\ufeff{"a": "é"}'.encode(),
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-16-be"),
        '{"a": "é"}'.encode("utf-32"),
        f'{{"id": {2**70}}}'.encode("utf-16"),
    ],
)
def test_what_orjson_refuses_is_read_as_json_loads_reads_it(body: bytes) -> None:
    """NaN, infinities, lone surrogates, a BOM and UTF-16/32 mean what they meant before."""
    assert repr(parse_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b'{"a": "\xff"}', b'{"a": 1} trailing', b""])
def test_what_neither_reads_raises_value_error(body: bytes) -> None:
    """Invalid UTF-8, trailing data, an empty body: not JSON, for either parser."""
    with pytest.raises(ValueError, match=r"."):
        parse_json(body)
