"""The upstream client against a respx-mocked provider edge."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import respx

from gateway.errors import (
    NotFound,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from gateway.upstream import CircuitBreaker, RetryPolicy, Unauthorized, UpstreamClient

URL = "https://api.provider.example/v2/tweets"
FAST = RetryPolicy(attempts=4, deadline=5.0, initial_backoff=0.001, max_backoff=0.01)


@asynccontextmanager
async def _client(
    router: respx.Router, *, max_body: int = 1024, policy: RetryPolicy = FAST
) -> AsyncIterator[UpstreamClient]:
    async with httpx.MockTransport(router.handler) as transport:
        yield UpstreamClient("x", transport, max_body=max_body, policy=policy)


async def _get(client: UpstreamClient) -> dict[str, object]:
    return await client.get_json(URL, params={"max_results": "5"}, bearer="tok")


async def test_a_json_object_is_returned_with_the_bearer_sent() -> None:
    """2xx JSON object → dict; the token goes in the Authorization header (RFC 6750 §2.1)."""
    router = respx.Router()
    route = router.get(URL).respond(200, json={"data": [], "meta": {}})
    async with _client(router) as client:
        assert await _get(client) == {"data": [], "meta": {}}
    assert route.calls.last.request.headers["authorization"] == "Bearer tok"
    assert route.calls.last.request.url.params["max_results"] == "5"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[1, 2]",
        b'{"data": [',
        b"",
        b'{"data": [{"text": "\xff"}]}',
    ],
)
async def test_malformed_json_is_upstream_malformed(body: bytes) -> None:
    """Not JSON (invalid UTF-8 included), or JSON that is not an object → 502."""
    router = respx.Router()
    router.get(URL).respond(200, content=body)
    async with _client(router) as client:
        with pytest.raises(UpstreamMalformed):
            await _get(client)


async def test_a_body_over_the_size_cap_is_refused() -> None:
    """Past upstream_max_body the answer is refused, not buffered."""
    router = respx.Router()
    router.get(URL).respond(200, json={"data": ["x" * 2000]})
    async with _client(router, max_body=1024) as client:
        with pytest.raises(UpstreamMalformed):
            await _get(client)


async def test_a_usage_capped_429_is_not_retried() -> None:
    """X's usage-capped problem is final: one call, 429 problem with Retry-After."""
    router = respx.Router()
    route = router.get(URL).respond(
        429,
        json={
            "title": "UsageCapExceeded",
            "type": "https://api.x.com/2/problems/usage-capped",
            "status": 429,
        },
    )
    async with _client(router) as client:
        with pytest.raises(UpstreamRateLimited) as raised:
            await _get(client)
    assert route.call_count == 1
    assert "Retry-After" in raised.value.headers


async def test_a_429_with_retry_after_is_retried_then_served() -> None:
    """A rate-limit 429 is waited out and the next answer served."""
    router = respx.Router()
    route = router.get(URL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}, json={"title": "Too Many Requests"}),
        httpx.Response(200, json={"data": []}),
    ]
    async with _client(router) as client:
        assert await _get(client) == {"data": []}
    assert route.call_count == 2


async def test_a_429_asking_longer_than_the_deadline_is_answered_at_once() -> None:
    """x-rate-limit-reset past the deadline → 429 problem now, saying when to come back."""
    router = respx.Router()
    route = router.get(URL).respond(429, headers={"x-rate-limit-reset": "9999999999"})
    async with _client(router) as client:
        with pytest.raises(UpstreamRateLimited) as raised:
            await _get(client)
    assert route.call_count == 1
    assert int(raised.value.headers["Retry-After"]) > 60


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_5xx_past_the_budget_is_upstream_unavailable(status: int) -> None:
    """502/503/504 are retried up to the attempt budget, then 503 with Retry-After."""
    router = respx.Router()
    route = router.get(URL).respond(status)
    async with _client(router) as client:
        with pytest.raises(UpstreamUnavailable) as raised:
            await _get(client)
    assert FAST.attempts == route.call_count
    assert "Retry-After" in raised.value.headers


async def test_connect_errors_and_timeouts_are_retried() -> None:
    """Transport failures are transient: retried, then served."""
    router = respx.Router()
    route = router.get(URL)
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"ok": True}),
    ]
    async with _client(router) as client:
        assert await _get(client) == {"ok": True}
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("status", "error"), [(401, Unauthorized), (404, NotFound), (400, UpstreamError)]
)
async def test_other_4xx_are_not_retried(status: int, error: type[Exception]) -> None:
    """401 goes back for a token refresh; 404 and 400 are final."""
    router = respx.Router()
    route = router.get(URL).respond(status, json={"error": "x"})
    async with _client(router) as client:
        with pytest.raises(error):
            await _get(client)
    assert route.call_count == 1


async def test_an_open_breaker_fails_fast_then_lets_a_probe_through() -> None:
    """After the threshold the provider is not called until the cool-off has passed."""
    now = [0.0]
    router = respx.Router()
    route = router.get(URL).respond(503)
    async with httpx.MockTransport(router.handler) as transport:
        breaker = CircuitBreaker("x", threshold=2, cool_off=10.0, clock=lambda: now[0])
        client = UpstreamClient("x", transport, max_body=1024, policy=FAST, breaker=breaker)
        with pytest.raises(UpstreamUnavailable):
            await _get(client)
        calls = route.call_count
        assert calls == 2
        with pytest.raises(UpstreamUnavailable):
            await _get(client)
        assert calls == route.call_count
        now[0] = 11.0
        route.respond(200, json={"back": True})
        assert await _get(client) == {"back": True}
        assert not breaker.is_open


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (URL, {"max_results": "5"}),
        (URL, {}),
        (URL, {"query": "from:a b&c=d/é", "tweet.fields": "id,text"}),
        (f"{URL}?max_results=10&pagination_token=b26v89c19zqg8o3f", {"max_results": "5"}),
        (
            "https://api.provider.example/rest/posts?q=author&author=urn%3Ali%3Aorganization%3A7",
            {"count": "10"},
        ),
        (
            "https://api.provider.example/scheduled_events?user=https://api.provider.example/users/U1",
            {"count": "25"},
        ),
        ("https://api.provider.example/v19.0/1/posts?limit=25&after=QVFIUk%3D%3D", {}),
    ],
)
async def test_params_are_merged_into_the_urls_own_query(url: str, params: dict[str, str]) -> None:
    """The URL sent is ``url`` with ``params`` merged into its query, as httpx merges them."""
    router = respx.Router()
    route = router.route(method="GET").respond(200, json={})
    async with _client(router) as client:
        for _ in range(2):  # the second call takes the parsed URL from the cache
            await client.get_json(url, params=params, bearer="tok")
            assert str(httpx.URL(url).copy_merge_params(params)) == str(
                route.calls.last.request.url
            )


async def test_the_request_is_the_one_httpx_asyncclient_built() -> None:
    """Method, URL, headers (names, case, order), timeouts and empty body as AsyncClient's."""
    router = respx.Router()
    route = router.get(URL).respond(200, json={})
    api = {"LinkedIn-Version": "202411"}
    timeout = httpx.Timeout(7.0, connect=2.0)
    async with httpx.MockTransport(router.handler) as transport:
        client = UpstreamClient("x", transport, max_body=1024, timeout=timeout, headers=api)
        await _get(client)
    async with httpx.AsyncClient(timeout=timeout) as http:
        expected = http.build_request(
            "GET",
            httpx.URL(URL).copy_merge_params({"max_results": "5"}),
            headers={**api, "Authorization": "Bearer tok", "Accept": "application/json"},
        )
    sent = route.calls.last.request
    assert (expected.method, str(expected.url), expected.headers.raw, expected.content) == (
        sent.method,
        str(sent.url),
        sent.headers.raw,
        sent.content,
    )
    assert expected.extensions == sent.extensions


async def test_the_providers_headers_are_sent_but_accept_stays_json() -> None:
    """A provider's API headers go out, replacing httpx's defaults of the same name
    (RFC 9110 §5.1: case-insensitively); Accept and Authorization are always ours."""
    router = respx.Router()
    route = router.get(URL).respond(200, json={})
    async with httpx.MockTransport(router.handler) as transport:
        client = UpstreamClient(
            "x",
            transport,
            max_body=1024,
            headers={
                "LinkedIn-Version": "202411",
                "user-agent": "Partner/1.0",
                "accept": "text/html",
                "AUTHORIZATION": "Basic c2VjcmV0",
            },
        )
        await _get(client)
    sent = route.calls.last.request.headers
    assert sent["linkedin-version"] == "202411"
    assert sent.get_list("user-agent") == ["Partner/1.0"]
    assert sent.get_list("accept") == ["application/json"]
    assert sent.get_list("authorization") == ["Bearer tok"]
    assert sent["accept-encoding"] == "gzip, deflate"
    assert sent["host"] == "api.provider.example"


async def test_a_providers_cookie_is_never_sent_back() -> None:
    """A Set-Cookie is not kept: the next call may be another user's."""
    router = respx.Router()
    route = router.get(URL).respond(200, json={}, headers={"Set-Cookie": "session=abc; Path=/"})
    async with _client(router) as client:
        await _get(client)
        await _get(client)
    assert "cookie" not in route.calls.last.request.headers


async def test_a_gzip_coded_body_is_decoded() -> None:
    """A body with a content coding (RFC 9110 §8.4.1.3) is decoded before it is parsed."""
    router = respx.Router()
    router.get(URL).respond(
        200, content=gzip.compress(b'{"data": []}'), headers={"Content-Encoding": "gzip"}
    )
    async with _client(router) as client:
        assert await _get(client) == {"data": []}


async def test_the_size_cap_counts_decoded_bytes() -> None:
    """A small gzip body that decodes past the cap is refused, not inflated into memory."""
    router = respx.Router()
    router.get(URL).respond(
        200,
        content=gzip.compress(b'{"data": "' + b"x" * 100_000 + b'"}'),
        headers={"Content-Encoding": "gzip"},
    )
    async with _client(router, max_body=1024) as client:
        with pytest.raises(UpstreamMalformed):
            await _get(client)


async def test_the_deadline_counts_the_first_attempt() -> None:
    """A first attempt that outlasts the deadline is not retried, whatever the attempt budget."""
    calls = 0

    async def slow_503(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return httpx.Response(503)

    policy = RetryPolicy(attempts=4, deadline=0.04, initial_backoff=0.001, max_backoff=0.01)
    async with httpx.MockTransport(slow_503) as transport:
        client = UpstreamClient("x", transport, max_body=1024, policy=policy)
        with pytest.raises(UpstreamUnavailable):
            await _get(client)
    assert calls == 1


async def test_a_single_attempt_budget_does_not_retry() -> None:
    """attempts=1: a transient failure is answered at once."""
    router = respx.Router()
    route = router.get(URL).respond(503)
    async with _client(router, policy=RetryPolicy(attempts=1)) as client:
        with pytest.raises(UpstreamUnavailable):
            await _get(client)
    assert route.call_count == 1


class _UnreadStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover


@pytest.mark.parametrize("name", ["Content-Length", "content-length", "CONTENT-LENGTH"])
async def test_a_declared_length_over_the_cap_is_refused_unread(name: str) -> None:
    """A Content-Length past the cap is refused before a byte of the body is read."""

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={name: "999999"}, stream=_UnreadStream())

    async with httpx.MockTransport(handler) as transport:
        client = UpstreamClient("x", transport, max_body=1024, policy=FAST)
        with pytest.raises(UpstreamMalformed):
            await _get(client)


async def test_repeated_content_lengths_leave_the_cap_to_the_bytes_read() -> None:
    """Two Content-Length fields declare nothing; the body within the cap is served."""

    def handler(_request: httpx.Request) -> httpx.Response:
        headers = [("Content-Length", "2"), ("Content-Length", "999999")]
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"{}"))

    async with httpx.MockTransport(handler) as transport:
        client = UpstreamClient("x", transport, max_body=1024, policy=FAST)
        assert await _get(client) == {}


async def test_a_content_coding_is_found_whatever_the_case_of_its_name() -> None:
    """Header names compare case-insensitively (RFC 9110 §5.1)."""
    router = respx.Router()
    router.get(URL).respond(
        200, content=gzip.compress(b'{"data": []}'), headers={"content-ENCODING": "gzip"}
    )
    async with _client(router) as client:
        assert await _get(client) == {"data": []}
