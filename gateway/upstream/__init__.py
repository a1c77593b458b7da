"""The outbound client: one pooled client per provider, retries, rate limits, a circuit breaker.

The tree of what a call can end in::

    dict (a JSON object)           the provider answered 2xx with a JSON object
    Unauthorized                   401: the caller refreshes the token once and retries
    UpstreamMalformed        502   not JSON, not an object, or over the size cap
    UpstreamError            502   another 4xx the gateway cannot fix by retrying
    NotFound                 404   the provider has no such item (e.g. an unknown post id)
    UpstreamRateLimited      429   a usage cap, or the retry budget spent on 429s (+ Retry-After)
    UpstreamUnavailable      503   connect errors, timeouts, 5xx past the budget, breaker open

Transport errors (httpx's, aiohttp's) never leave this package. The client is chosen by
measurement (``tests/benchmarks/bench_upstream.py``): aiohttp, called directly
on the network; an injected ``httpx.AsyncBaseTransport`` takes its place in
tests (respx, ``httpx.MockTransport``). Neither goes through ``httpx.AsyncClient``
or keeps cookies: no cookie jar, no redirects, no auth flow, none of which a
provider call wants (``gateway.upstream._wires``).
"""

from __future__ import annotations

from gateway.upstream._breaker import CircuitBreaker
from gateway.upstream._client import (
    DEFAULT_CONNECT_TIMEOUT,
    Unauthorized,
    UpstreamClient,
    UpstreamClients,
    open_upstream_clients,
)
from gateway.upstream._retry import RetryPolicy, is_usage_capped, retry_delay

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "CircuitBreaker",
    "RetryPolicy",
    "Unauthorized",
    "UpstreamClient",
    "UpstreamClients",
    "is_usage_capped",
    "open_upstream_clients",
    "retry_delay",
]
