"""JSON responses rendered by orjson: the bytes Starlette's JSONResponse renders."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette import responses

from gateway.api.responses import JSONResponse


class _Visibility(enum.StrEnum):
    PUBLIC = "public"


# Floats are left out: orjson writes 1e-05 as 0.00001, the same number.
_CONTENT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.sampled_from(list(_Visibility)),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


def _starlette(content: Any) -> bytes:
    return bytes(responses.JSONResponse(content).body)


@given(_CONTENT)
def test_the_body_is_the_one_starlette_renders(content: Any) -> None:
    """Same bytes as Starlette's JSONResponse: UTF-8, compact, enum members as values."""
    assert JSONResponse(content).body == _starlette(content)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_keep_their_value(number: float) -> None:
    """A float may be spelled differently (0.00001 for 1e-05) but is the same number."""
    assert float(JSONResponse([number]).body[1:-1]) == number


@pytest.mark.parametrize(
    "content",
    [
        {"big": 2**64, "small": -(2**63) - 1},
        {1: "a", None: "b", 2.5: "c"},
        {_Visibility.PUBLIC: 1},
    ],
)
def test_what_orjson_refuses_is_rendered_by_starlette(content: Any) -> None:
    """Integers past 64 bits and non-str keys still render, exactly as before."""
    assert JSONResponse(content).body == _starlette(content)


@dataclasses.dataclass
class _Token:
    secret: str


@pytest.mark.parametrize(
    "content",
    [
        {"at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},
        {"at": datetime.date(2026, 1, 1)},
        {"token": _Token("s3cr3t")},
    ],
)
def test_types_json_dumps_refuses_are_still_refused(content: Any) -> None:
    """A datetime or dataclass never leaves as JSON nobody chose to publish."""
    with pytest.raises(TypeError):
        JSONResponse(content)


def test_a_lone_surrogate_fails_as_it_did() -> None:
    """Text that is not Unicode scalar values is refused, as Starlette refuses it."""
    with pytest.raises(UnicodeEncodeError):
        JSONResponse({"text": "\ud800"})


def test_headers_are_starlettes() -> None:
    """Content-Type and Content-Length are the ones Starlette sets."""
    content = {"text": "café ☕", "n": 1}
    ours = JSONResponse(content, headers={"Cache-Control": "no-store"})
    theirs = responses.JSONResponse(content, headers={"Cache-Control": "no-store"})
    assert ours.headers.items() == theirs.headers.items()
