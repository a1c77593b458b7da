"""The upstream client on the network (aiohttp), against a provider on loopback (raw HTTP)."""

from __future__ import annotations

import asyncio
import gzip
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import aiohttp.client_exceptions
import httpx
import pytest

from gateway.errors import UpstreamMalformed, UpstreamUnavailable
from gateway.upstream import RetryPolicy, UpstreamClient, open_upstream_clients
from gateway.upstream._wires import translation

FAST = RetryPolicy(attempts=3, deadline=5.0, initial_backoff=0.001, max_backoff=0.01)
Answer = Callable[[int], bytes]  # the raw response to the n-th request (0-based)


def _response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Provider:
    """A provider's API on loopback: keeps each request's raw head, answers as scripted."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(head)
                writer.write(self.answer(len(self.requests) - 1))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[_Provider]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


@asynccontextmanager
async def _client(
    *, max_body: int = 1024, request_timeout: float = 5.0, headers: dict[str, str] | None = None
) -> AsyncIterator[UpstreamClient]:
    async with open_upstream_clients(
        ["x"],
        request_timeout=request_timeout,
        max_connections=4,
        max_body=max_body,
        policy=FAST,
        headers={"x": headers or {}},
    ) as clients:
        yield clients["x"]


async def test_the_request_on_the_wire_is_the_one_the_httpx_transport_sent() -> None:
    """Method, target, header names (lower case, as httpx handed them to aiohttp) and order."""
    async with (
        _Provider(lambda _n: _response(b"{}")).running() as provider,
        _client(headers={"X-Api-Version": "2", "accept": "text/html"}) as client,
    ):
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        assert await client.get_json(url, params={"limit": "25", "q": "a b/é"}, bearer="tok") == {}
    assert provider.requests == [
        b"GET /api/posts?limit=25&q=a+b/%C3%A9 HTTP/1.1\r\n"
        + f"host: 127.0.0.1:{provider.port}\r\n".encode()
        + b"accept-encoding: gzip, deflate\r\n"
        b"connection: keep-alive\r\n"
        + f"user-agent: python-httpx/{httpx.__version__}\r\n".encode()
        + b"x-api-version: 2\r\n"
        b"authorization: Bearer tok\r\n"
        b"accept: application/json\r\n"
        b"\r\n"
    ]


async def test_a_providers_cookie_is_never_sent_back_on_the_network() -> None:
    """A Set-Cookie from a named host is not kept: the next call may be another user's."""
    cookie = "Set-Cookie: session=abc; Path=/"
    async with _Provider(lambda _n: _response(b"{}", cookie)).running() as provider, _client() as c:
        url = f"http://localhost:{provider.port}/api/posts"
        for _ in range(2):
            await c.get_json(url, params={}, bearer="tok")
    assert [b"cookie" in head.lower() for head in provider.requests] == [False, False]


async def test_a_gzip_coded_body_is_decoded_on_the_network() -> None:
    """A content coding (RFC 9110 §8.4.1.3) is decoded before the body is parsed."""
    coded = _response(gzip.compress(b'{"data": []}'), "Content-Encoding: gzip")
    async with _Provider(lambda _n: coded).running() as provider, _client() as client:
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        assert await client.get_json(url, params={}, bearer="tok") == {"data": []}


def _chunked(body: bytes) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    return _response(chunks + b"0\r\n\r\n", "Transfer-Encoding: chunked")


@pytest.mark.parametrize(
    "answer",
    [
        _response(b'{"data": "' + b"x" * 2000 + b'"}'),
        _chunked(b'{"data": "' + b"x" * 2000 + b'"}'),
        _response(gzip.compress(b'{"data": "' + b"x" * 100_000 + b'"}'), "Content-Encoding: gzip"),
    ],
    ids=["declared", "chunked", "decoded"],
)
async def test_a_body_over_the_cap_is_refused_on_the_network(answer: bytes) -> None:
    """Past the cap (declared, counted as it arrives, or decoded) the answer is a 502."""
    async with _Provider(lambda _n: answer).running() as provider, _client() as client:
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        with pytest.raises(UpstreamMalformed):
            await client.get_json(url, params={}, bearer="tok")


async def test_a_chunked_body_within_the_cap_is_served() -> None:
    """A body without a declared length is read to its end."""
    answer = _chunked(b'{"data": [1, 2, 3], "more": "yes"}')
    async with _Provider(lambda _n: answer).running() as provider, _client() as client:
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        assert await client.get_json(url, params={}, bearer="tok") == {
            "data": [1, 2, 3],
            "more": "yes",
        }


async def test_a_503_with_retry_after_is_retried_then_served_on_the_network() -> None:
    """A transient status is retried; its headers are read for Retry-After."""

    def answer(n: int) -> bytes:
        if n == 0:
            return _response(b"", "Retry-After: 0", status="503 Service Unavailable")
        return _response(b'{"ok": true}')

    async with _Provider(answer).running() as provider, _client() as client:
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        assert await client.get_json(url, params={}, bearer="tok") == {"ok": True}
    assert len(provider.requests) == 2


async def test_a_silent_provider_is_a_read_timeout() -> None:
    """No answer within the timeout: retried, then 503 naming httpx's ReadTimeout as before."""
    async with (
        _Provider(lambda _n: b"").running() as provider,
        _client(request_timeout=0.05) as client,
    ):
        url = f"http://127.0.0.1:{provider.port}/api/posts"
        with pytest.raises(UpstreamUnavailable) as raised:
            await client.get_json(url, params={}, bearer="tok")
    assert raised.value.detail == "x timed out (ReadTimeout)"
    assert len(provider.requests) == FAST.attempts


async def test_a_refused_connection_reads_as_unreachable() -> None:
    """Nobody listening: 503 that says the provider is unreachable, not that it was slow."""
    async with _Provider(lambda _n: b"").running() as provider:
        port = provider.port
    async with _client() as client:
        with pytest.raises(UpstreamUnavailable) as raised:
            await client.get_json(f"http://127.0.0.1:{port}/api/posts", params={}, bearer="tok")
    assert raised.value.detail == "x unreachable (ConnectError)"


def _aiohttp_errors() -> list[type[Exception]]:
    return sorted(
        (
            cls
            for cls in vars(aiohttp.client_exceptions).values()
            if inspect.isclass(cls) and issubclass(cls, Exception)
        ),
        key=lambda cls: cls.__name__,
    )


# What each kind of aiohttp failure must read as (httpx's own names for them).
_EXPECTED = {
    aiohttp.ConnectionTimeoutError: httpx.ConnectTimeout,
    aiohttp.SocketTimeoutError: httpx.ReadTimeout,
    aiohttp.ServerTimeoutError: httpx.ReadTimeout,
    aiohttp.ClientConnectorError: httpx.ConnectError,
    aiohttp.ClientConnectorCertificateError: httpx.ConnectError,
    aiohttp.ClientConnectorDNSError: httpx.ConnectError,
    aiohttp.ServerDisconnectedError: httpx.RemoteProtocolError,
    aiohttp.ClientOSError: httpx.ReadError,
    aiohttp.ClientConnectionError: httpx.ReadError,  # a reset, a fingerprint mismatch …
    aiohttp.ClientPayloadError: httpx.ReadError,
    aiohttp.ClientHttpProxyError: httpx.ProxyError,
    aiohttp.InvalidUrlClientError: httpx.UnsupportedProtocol,
    aiohttp.NonHttpUrlClientError: httpx.UnsupportedProtocol,
    aiohttp.ClientResponseError: None,  # a status, not a transport failure: raised as it is
}


@pytest.mark.parametrize("error", _aiohttp_errors(), ids=lambda cls: cls.__name__)
def test_aiohttp_errors_become_httpx_errors(error: type[Exception]) -> None:
    """Every aiohttp error class reads as httpx's name for its nearest listed base, or as itself."""
    expected = next((_EXPECTED[base] for base in error.__mro__ if base in _EXPECTED), None)
    assert translation(error) is expected
