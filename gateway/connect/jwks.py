"""Providers' signing keys, cached, refetched when a token names a key we do not know.

Providers rotate signing keys by publishing the new key before using it (OIDC
Core §10.1.1); a token signed with an unknown ``kid`` triggers one refetch,
never more than once per ``MIN_REFETCH_SECONDS``, so a forged ``kid`` cannot
make us hammer the provider.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from gateway.oauth import fetch_json

DEFAULT_MAX_AGE_SECONDS = 3600
MIN_REFETCH_SECONDS = 30


class JWKSCache:
    def __init__(self, http: httpx.AsyncClient, *, max_age: float = DEFAULT_MAX_AGE_SECONDS):
        self._http = http
        self._max_age = max_age
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def get(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        async with self._lock:
            fetched_at, keys = self._entries.get(url, (0.0, {}))
            age = time.monotonic() - fetched_at
            stale = age > self._max_age
            if keys and not stale and not (refresh and age > MIN_REFETCH_SECONDS):
                return keys
            keys = await fetch_json(self._http, url)
            self._entries[url] = (time.monotonic(), keys)
            return keys
