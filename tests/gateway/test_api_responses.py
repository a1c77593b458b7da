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

from gateway.api.responses import JSONResponse, isoformat


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


@given(st.datetimes(timezones=st.just(datetime.UTC)))
def test_a_utc_time_is_written_as_isoformat_writes_it(moment: datetime.datetime) -> None:
    """Every UTC datetime, years 1 to 9999, with and without microseconds."""
    assert isoformat(moment) == moment.isoformat()


_OFFSETS = st.timedeltas(
    min_value=-datetime.timedelta(hours=23, minutes=59, seconds=59),
    max_value=datetime.timedelta(hours=23, minutes=59, seconds=59),
).map(datetime.timezone)


@given(st.datetimes(timezones=st.none() | _OFFSETS))
def test_any_other_time_is_written_as_isoformat_writes_it(moment: datetime.datetime) -> None:
    """Naive times and every fixed offset, sub-minute ones (+05:30:15) included."""
    assert isoformat(moment) == moment.isoformat()


def test_a_utc_time_from_a_provider_is_written_by_isoformats_rules() -> None:
    """``Z`` and ``+0000`` read as UTC; microseconds appear only when there are some."""
    assert isoformat(datetime.datetime.fromisoformat("2025-03-01T07:00:00Z")) == (
        "2025-03-01T07:00:00+00:00"
    )
    assert isoformat(datetime.datetime.fromisoformat("2025-03-04T10:00:00.000001+0000")) == (
        "2025-03-04T10:00:00.000001+00:00"
    )
    assert isoformat(datetime.datetime(2025, 3, 4, 10, tzinfo=datetime.UTC, fold=1)) == (
        "2025-03-04T10:00:00+00:00"
    )
