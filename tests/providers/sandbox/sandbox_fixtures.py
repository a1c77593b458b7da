"""The sandbox provider's own demo data, shaped as its API pages it, for the filter table.

The sandbox is our stand-in provider: its documented response shapes are the
ones ``providers/sandbox/api.py`` serves from ``demo_data``, so these pages are
built from that data rather than copied.
"""

from __future__ import annotations

from typing import Any

from providers.sandbox.demo_data import ADA


def _page(items: Any) -> dict[str, Any]:
    return {"data": list(items), "paging": {}}


ME: dict[str, Any] = ADA.me()
POSTS = _page(ADA.posts)
COMMENTS = _page(comment for thread in ADA.comments.values() for comment in thread)
CONVERSATIONS = _page(ADA.conversations)
EVENTS = _page(ADA.events)
