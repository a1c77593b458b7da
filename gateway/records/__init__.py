"""Records: fetch → normalize → decide → audit → respond, in one service and one route."""

from __future__ import annotations

from gateway.records.service import (
    DEFAULT_LIMIT,
    NO_CONSENT,
    NO_SUPPRESSION,
    RecordsPage,
    RecordsQuery,
    RecordsService,
)

__all__ = [
    "DEFAULT_LIMIT",
    "NO_CONSENT",
    "NO_SUPPRESSION",
    "RecordsPage",
    "RecordsQuery",
    "RecordsService",
]
