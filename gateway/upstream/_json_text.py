"""Reading a provider's JSON body: ``json.loads``'s answer, mostly computed by orjson.

orjson reads a page in about half the instructions of ``json.loads`` (measured
under callgrind on the benchmark's page of 25 posts: 0.11 M against 0.23 M).
Where the two read the same text differently, ``json.loads`` decides, so that a
provider's page means what it meant before:

* text orjson refuses but ``json.loads`` reads (``NaN``, ``Infinity``, numbers
  that overflow a double, lone UTF-16 surrogates such as ``"\\ud800"``, a byte
  order mark, UTF-16 or UTF-32) is read again by ``json.loads``;
* integers past the 64-bit range, which orjson would round to a double, are
  read exactly: an id sent as a JSON number must not change on the way (one
  rounded to a double would name another subject). Only a run of 19 or more
  digits sends a body to ``json.loads`` for this.

Duplicate names keep the last value in both. Whatever neither reads (invalid
UTF-8 included) raises ``ValueError``, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["parse_json"]

# Every digit becomes "0": an integer orjson cannot hold exactly (below -2**63
# or above 2**64 - 1) then shows as a run of 20 zeros or "-" and 19 zeros.
# bytes.translate and two substring searches cost about 40k instructions on the
# benchmark's page, a regular expression finding the same runs over ten times that.
_DIGIT_RUNS = bytes.maketrans(b"123456789", b"000000000")
_LONG_POSITIVE = b"0" * 20
_LONG_NEGATIVE = b"-" + b"0" * 19


def parse_json(body: bytes) -> Any:
    """The value of the JSON text *body*, as ``json.loads`` reads it; ``ValueError`` if none."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
    runs = body.translate(_DIGIT_RUNS)
    if _LONG_POSITIVE in runs or _LONG_NEGATIVE in runs:
        return json.loads(body)
    return value
