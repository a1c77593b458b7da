"""Reading ``application/x-www-form-urlencoded`` OAuth request bodies (RFC 6749 §3.2, §4.1.3)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request

from providers.sandbox.errors import InvalidRequest

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def single_valued(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The parameters as a dict; RFC 6749 §3.1, §3.2: none may be given more than once."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"parameter {name} given more than once")
        params[name] = value
    return params


async def read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise InvalidRequest(f"the body must be {FORM_MEDIA_TYPE}")
    body = (await request.body()).decode("utf-8", errors="replace")
    return single_valued(parse_qsl(body, keep_blank_values=True))
