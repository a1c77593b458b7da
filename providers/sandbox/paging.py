"""Pages of a collection: ``limit`` and an opaque ``page_token`` / ``next_page_token``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.sandbox.settings import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

_PREFIX = "o:"


class PageRequestError(ValueError):
    """A ``limit`` or ``page_token`` the API cannot honour."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    offset: int
    limit: int

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PageRequest:
        return cls(offset=_offset(query.get("page_token")), limit=_limit(query.get("limit")))


def page(items: Sequence[Any], request: PageRequest) -> dict[str, Any]:
    """``{"data": [...], "paging": {"next_page_token": …}}``; no token on the last page."""
    chunk = list(items[request.offset : request.offset + request.limit])
    paging: dict[str, str] = {}
    following = request.offset + request.limit
    if following < len(items):
        paging["next_page_token"] = _token(following)
    return {"data": chunk, "paging": paging}


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise PageRequestError("page_token is not one this API issued") from None
    prefix, number = raw[: len(_PREFIX)], raw[len(_PREFIX) :]
    if prefix != _PREFIX or not number.isdigit():
        raise PageRequestError("page_token is not one this API issued")
    return int(number)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise PageRequestError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return int(value)
