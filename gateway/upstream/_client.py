"""One long-lived, pooled HTTP session per provider, and the call that retries on it."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import structlog
from opentelemetry import trace
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from gateway.errors import (
    LinkgateError,
    NotFound,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from gateway.observability import ClientCall, GatewayMetrics, client_span
from gateway.upstream._breaker import CircuitBreaker
from gateway.upstream._json_text import parse_json
from gateway.upstream._retry import (
    RETRYABLE_STATUS,
    RetryPolicy,
    announced,
    is_usage_capped,
    retry_delay,
)
from gateway.upstream._wires import (
    AiohttpWire,
    Answer,
    BodyOverCap,
    HttpxWire,
    Target,
    Wire,
    open_session,
)
from providers.base import ErrorKind, ErrorTable, ErrorVerdict

log = structlog.get_logger("gateway.upstream")

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=DEFAULT_CONNECT_TIMEOUT)

# What ``httpx.AsyncClient`` added to every request by default (its Accept is always
# replaced by ours), sent as before now that requests go straight to the wire:
# "gzip, deflate" are the content codings httpx decodes without optional packages.
_CLIENT_HEADERS = {
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}
_OURS = frozenset({"authorization", "accept"})  # set per call; no provider header replaces them
# Query-free page URLs with their query added, parsed once (see ``_target``): parsing and
# merging costs more instructions than anything else this client does itself, and a
# page's URL repeats for every read of that page. Bounded: each entry is a few hundred bytes.
_TARGETS_CACHED = 512


class Unauthorized(Exception):
    """The provider refused the access token (RFC 6750 §3.1 ``invalid_token``)."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying; carries the problem to raise at the end."""

    def __init__(self, problem: LinkgateError, delay: float | None = None) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.delay = delay


class UpstreamClient:
    """GETs JSON objects from one provider's API.

    On the network each request goes straight to an ``aiohttp.ClientSession``;
    given an ``httpx.AsyncBaseTransport`` instead (tests), straight to that
    (see ``gateway.upstream._wires``). No ``httpx.AsyncClient`` in between: its
    layers (cookie jar, auth flow, redirects, event hooks) are nothing the
    gateway wants for provider calls, and together they cost about as much CPU
    as the exchange itself. A provider's ``Set-Cookie`` in particular must never
    be replayed on the next user's call, and a redirect could leave the
    provider's origin.
    """

    def __init__(
        self,
        name: str,
        transport: aiohttp.ClientSession | httpx.AsyncBaseTransport,
        *,
        max_body: int,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        errors: ErrorTable | None = None,
        headers: Mapping[str, str] | None = None,
        tracer: trace.Tracer | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.name = name
        self._max_body = max_body
        self._policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(name)
        self._errors = errors or ErrorTable()  # the provider's error rules (providers.base)
        # httpx's defaults, then the provider's fixed API headers, in the order and
        # case httpx.AsyncClient merged them (names compare case-insensitively,
        # RFC 9110 §5.1: a provider's header replaces a default of the same name).
        api = {k: v for k, v in (headers or {}).items() if k.lower() not in _OURS}
        named = {k.lower() for k in api}
        defaults = {k: v for k, v in _CLIENT_HEADERS.items() if k.lower() not in named}
        headers_sent = {**defaults, **api}
        self._wire: Wire = (
            AiohttpWire(transport, headers_sent, timeout)
            if isinstance(transport, aiohttp.ClientSession)
            else HttpxWire(transport, headers_sent, timeout)
        )
        self._span_attributes = {"linkgate.provider": name}
        self._tracer = tracer or trace.NoOpTracer()
        self._metrics = metrics  # http.client.request.duration, per attempt

    async def get_json(self, url: str, *, params: Mapping[str, str], bearer: str) -> dict[str, Any]:
        """The JSON object at ``url``, retried under the policy's deadline."""
        started = time.monotonic()
        target = _target(url, params)
        try:
            return await self._attempt(
                target, bearer, remaining=self._policy.deadline, resend_count=0
            )
        except _Transient as failed:
            return await self._retry(target, bearer, failed, started)

    async def _retry(
        self, target: Target, bearer: str, failed: _Transient, started: float
    ) -> dict[str, Any]:
        """The attempts after a transient failure, under tenacity.

        Built only once the first attempt has failed: most calls succeed at once,
        and a retry controller per call was a measurable share of the hot path.
        Tenacity's first attempt re-raises that failure, so that its attempt count,
        backoff and deadline cover the whole call as if it had made that attempt.
        """
        policy = self._policy
        first: _Transient | None = failed
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(policy.attempts)
            | stop_after_delay(policy.deadline - (time.monotonic() - started)),
            wait=self._backoff,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if first is not None:
                        replayed, first = first, None
                        raise replayed
                    return await self._attempt(
                        target,
                        bearer,
                        remaining=policy.deadline - (time.monotonic() - started),
                        resend_count=attempt.retry_state.attempt_number - 1,
                    )
        except _Transient as exc:
            log.warning("upstream.gave_up", provider=self.name, problem=exc.problem.problem)
            raise exc.problem from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _backoff(self, state: RetryCallState) -> float:
        """Seconds before the next attempt.

        Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"),
        but never sooner than the provider asked (RFC 9110 §10.2.3).
        """
        policy = self._policy
        backoff = min(policy.max_backoff, policy.initial_backoff * 2 ** (state.attempt_number - 1))
        jittered = random.uniform(0, backoff)  # noqa: S311 - jitter, not a secret
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        asked = error.delay if isinstance(error, _Transient) else None
        return max(jittered, asked or 0.0)

    async def _attempt(
        self, target: Target, bearer: str, *, remaining: float, resend_count: int
    ) -> dict[str, Any]:
        self.breaker.before()  # an open breaker sends nothing, so it gets no client span
        with client_span(
            self._tracer,
            "GET",
            target.url,
            resend_count=resend_count,
            attributes=self._span_attributes,
            provider=self.name,
            metrics=self._metrics,
        ) as call:
            return await self._exchange(target, bearer, call, remaining)

    async def _exchange(
        self, target: Target, bearer: str, call: ClientCall, remaining: float
    ) -> dict[str, Any]:
        try:
            answer: Answer = await self._wire.get(target, bearer, self._max_body)
        except BodyOverCap:
            # Refused before it is all in memory (the declared length, or as it arrived).
            raise UpstreamMalformed(f"{self.name} answered with a body over the size cap") from None
        except httpx.TimeoutException as exc:
            self.breaker.failure()
            call.failed(type(exc).__name__)
            raise _Transient(self._unavailable(f"timed out ({type(exc).__name__})")) from None
        except httpx.TransportError as exc:
            self.breaker.failure()
            call.failed(type(exc).__name__)
            raise _Transient(self._unavailable(f"unreachable ({type(exc).__name__})")) from None
        status, raw_headers, body = answer
        call.answered(status)
        if status >= 400:
            verdict = self._errors.classify_api(status, _parsed_or_none(body))
            if verdict is not None:
                return self._classified(verdict, status, httpx.Headers(raw_headers), remaining)
        if status in RETRYABLE_STATUS:
            return self._transient(status, httpx.Headers(raw_headers), body, remaining)
        self.breaker.success()
        if status == 401:
            raise Unauthorized()
        if status == 404:
            raise NotFound(f"{self.name} has no such item")
        if status >= 400:
            raise UpstreamError(f"{self.name} answered HTTP {status}")
        return _json_object(self.name, body)

    def _transient(
        self, status: int, headers: httpx.Headers, body: bytes, remaining: float
    ) -> dict[str, Any]:
        delay = retry_delay(headers, now=time.time())
        if status == 429:
            self.breaker.success()  # the provider is up; it is only pacing us
            if is_usage_capped(status, body):
                raise UpstreamRateLimited(
                    f"{self.name} reports a usage cap; retrying will not help",
                    headers={"Retry-After": announced(delay)},
                )
            problem: LinkgateError = UpstreamRateLimited(
                f"{self.name} is rate limiting", headers={"Retry-After": announced(delay)}
            )
            if delay is not None and delay > remaining:
                raise problem  # waiting would outlast the deadline: say when to come back
            raise _Transient(problem, delay)
        self.breaker.failure()
        raise _Transient(
            UpstreamUnavailable(
                f"{self.name} answered HTTP {status}", headers={"Retry-After": announced(delay)}
            ),
            delay,
        )

    def _classified(
        self, verdict: ErrorVerdict, status: int, headers: httpx.Headers, remaining: float
    ) -> dict[str, Any]:
        """Act on the provider's own reading of its error (its ``ErrorTable.api`` rules)."""
        code = verdict.code[:64]
        asked = retry_delay(headers, now=time.time())
        delay = asked if asked is not None else verdict.wait(headers)
        if status >= 500:
            self.breaker.failure()
        else:
            self.breaker.success()  # the provider is up and told us what is wrong
        if verdict.kind is ErrorKind.REAUTH:
            raise Unauthorized()
        if verdict.kind is ErrorKind.PERMANENT:
            raise UpstreamError(f"{self.name} refused the request ({code})")
        retry_after = {"Retry-After": announced(delay)}
        if verdict.kind is ErrorKind.USAGE_CAPPED:
            raise UpstreamRateLimited(
                f"{self.name} reports a usage cap ({code}); retrying will not help",
                headers=retry_after,
            )
        problem: LinkgateError = (
            UpstreamUnavailable(f"{self.name} asks to retry later ({code})", headers=retry_after)
            if status >= 500
            else UpstreamRateLimited(f"{self.name} is rate limiting ({code})", headers=retry_after)
        )
        if delay is not None and delay > remaining:
            raise problem  # waiting would outlast the deadline: say when to come back
        raise _Transient(problem, delay)

    def _unavailable(self, what: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"{self.name} {what}", headers={"Retry-After": announced(None)})


def _target(url: str, params: Mapping[str, str]) -> Target:
    """``url`` with ``params`` merged into its query, as ``httpx.URL.copy_merge_params`` does.

    Merged, not passed as httpx's ``params``: httpx would replace the URL's own query
    (a next link's $skip, a Rest.li finder's q=author) with the mapping.
    """
    if "?" in url or "#" in url:
        # A provider's next link (Graph API's carry an access_token) or a path with a
        # query of its own: merged on every call, never kept in the cache.
        return Target(httpx.URL(url).copy_merge_params(params))
    return _query_free_target(url, tuple(params.items()))


@functools.lru_cache(maxsize=_TARGETS_CACHED)
def _query_free_target(url: str, params: tuple[tuple[str, str], ...]) -> Target:
    """A URL without a query of its own with ``params`` as its query.

    One parse of the finished text gives the URL that ``copy_merge_params`` gives
    (both encode the query with ``urllib.parse.urlencode``) for a third of its cost;
    ``httpx.URL`` is immutable, so one target serves every request for that page.
    """
    return Target(httpx.URL(f"{url}?{urlencode(params)}" if params else url))


def _parsed_or_none(body: bytes) -> Any:
    """An error body as JSON for the provider's rules; None when it is not JSON."""
    try:
        return parse_json(body) if body else None
    except ValueError:
        return None


def _json_object(name: str, body: bytes) -> dict[str, Any]:
    try:
        parsed = parse_json(body)
    except ValueError:
        raise UpstreamMalformed(f"{name} answered with something that is not JSON") from None
    if not isinstance(parsed, dict):
        raise UpstreamMalformed(f"{name} answered with JSON that is not an object")
    return parsed


class UpstreamClients(Mapping[str, UpstreamClient]):
    """The clients by provider name."""

    def __init__(self, clients: Mapping[str, UpstreamClient]) -> None:
        self._clients = dict(clients)

    def __getitem__(self, name: str) -> UpstreamClient:
        return self._clients[name]

    def __iter__(self) -> Any:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)


@asynccontextmanager
async def open_upstream_clients(
    names: Iterable[str],
    *,
    request_timeout: float,
    max_connections: int,
    max_body: int,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
    errors: Mapping[str, ErrorTable] | None = None,
    headers: Mapping[str, Mapping[str, str]] | None = None,
    tracer: trace.Tracer | None = None,
    metrics: GatewayMetrics | None = None,
) -> AsyncIterator[UpstreamClients]:
    """One client per provider for the runtime's lifetime; closed on exit.

    ``transport`` replaces the network for tests. Otherwise each client gets its
    own aiohttp pool: measured here at 32 in flight, aiohttp serves about 20x
    the requests/s of httpx's default httpcore pool (see
    tests/benchmarks/bench_upstream.py), and called directly it costs about half
    the instructions per call that it cost behind the ``httpx-aiohttp`` transport.
    """
    timeout = httpx.Timeout(request_timeout, connect=min(request_timeout, DEFAULT_CONNECT_TIMEOUT))
    async with AsyncExitStack() as stack:
        if transport is not None:
            # Closed once on exit, as ``httpx.AsyncClient(transport=...)`` would close it.
            await stack.enter_async_context(transport)
        clients: dict[str, UpstreamClient] = {}
        for name in names:
            pool: aiohttp.ClientSession | httpx.AsyncBaseTransport | None = transport
            if pool is None:
                pool = await stack.enter_async_context(open_session(max_connections))
            clients[name] = UpstreamClient(
                name,
                pool,
                max_body=max_body,
                timeout=timeout,
                policy=policy,
                errors=(errors or {}).get(name),
                headers=(headers or {}).get(name),
                tracer=tracer,
                metrics=metrics,
            )
        yield UpstreamClients(clients)
