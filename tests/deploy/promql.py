"""The series a PromQL expression reads: its selectors, their matchers, the labels it groups by.

Not a PromQL parser: enough of the grammar (Prometheus docs, "Querying basics")
for the expressions in deploy/, and strict where it is not sure. String
literals are set aside first (a route template holds braces), then selectors
(``name{matchers}``), grouping clauses (``by (...)``, ``on (...)`` ...), range
and offset durations, numbers and function calls are read or removed; any
identifier left is a selector without matchers, and is reported as one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\x00(\d+)\x00\s*(?:,|$)")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_DURATION = re.compile(r"\[[^\[\]]*\]|\boffset\s+[0-9a-z$_]+")
_CALL = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\s*\(")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool"})


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[Matcher, ...]

    @property
    def labels(self) -> set[str]:
        return {matcher.label for matcher in self.matchers}


@dataclass(frozen=True)
class Reads:
    """What one expression reads."""

    selectors: tuple[Selector, ...]
    grouping: frozenset[str]  # labels named in by/without/on/ignoring/group_* clauses


def reads(expr: str) -> Reads:
    """The selectors of *expr* and the labels its aggregations and matches name."""
    strings: list[str] = []

    def set_aside(match: re.Match[str]) -> str:
        strings.append(json.loads(match[0]))
        return f"\x00{len(strings) - 1}\x00"

    text = _STRING.sub(set_aside, expr)
    selectors: list[Selector] = []

    def take_selector(match: re.Match[str]) -> str:
        body = match[2]
        matchers = []
        position = 0
        while position < len(body.rstrip()):
            found = _MATCHER.match(body, position)
            assert found is not None, f"cannot read the matchers {body!r} in {expr!r}"
            matchers.append(Matcher(found[1], found[2], strings[int(found[3])]))
            position = found.end()
        selectors.append(Selector(match[1], tuple(matchers)))
        return " "

    text = _SELECTOR.sub(take_selector, text)
    grouping: set[str] = set()
    for _keyword, labels in _GROUPING.findall(text):
        grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = _CALL.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    text = _PLACEHOLDER.sub(" ", text)
    for word in _IDENTIFIER.findall(text):
        if word not in _KEYWORDS:
            selectors.append(Selector(word, ()))
    return Reads(tuple(selectors), frozenset(grouping))
