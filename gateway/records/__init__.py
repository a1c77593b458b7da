"""Records: fetch → normalize → decide → audit → respond, in one service and one route."""

from __future__ import annotations

from gateway.records.service import (
    DEFAULT_LIMIT,
    RecordsPage,
    RecordsQuery,
    RecordsService,
)

__all__ = [
    "DEFAULT_LIMIT",
    "RecordsPage",
    "RecordsQuery",
    "RecordsService",
]
