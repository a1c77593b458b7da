"""How a provider call reaches the provider: aiohttp on the network, or an httpx transport.

Both wires send the same GET and hand back the same :class:`Answer` (status,
raw headers, the body read under the size cap); the client above them decides
what the answer means. Their failures are httpx's transport errors, so the
client handles one exception tree whichever wire is in use.

* :class:`AiohttpWire` is the network: an ``aiohttp.ClientSession`` called
  directly, without an httpx layer on top (its request and response objects
  cost more instructions than aiohttp's own work on the call; the README's
  Performance section has the figures). The request on the wire is byte for
  byte the one httpx sent (header names in lower case), aiohttp's errors are
  raised as httpx's names for them, and a content coding is decoded by httpx's
  decoders. The session keeps no cookies: a provider's ``Set-Cookie`` must
  never be replayed on the next call, which may be another user's.
* :class:`HttpxWire` sends through any ``httpx.AsyncBaseTransport``: tests
  put ``httpx.MockTransport`` or respx there to stand in for a provider.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import NamedTuple, Protocol

import aiohttp
import httpx
from yarl import URL

__all__ = [
    "AiohttpWire",
    "Answer",
    "BodyOverCap",
    "HttpxWire",
    "Target",
    "Wire",
    "framing",
    "open_session",
    "translation",
]

# What the httpx-aiohttp transport read from httpx.Limits and used per chunk.
KEEPALIVE_EXPIRY = httpx.Limits().keepalive_expiry
_CHUNK_SIZE = 16 * 1024

RawHeaders = Sequence[tuple[bytes, bytes]]


class Answer(NamedTuple):
    """A provider's response, its body already read."""

    status: int
    raw_headers: RawHeaders
    body: bytes


class BodyOverCap(Exception):
    """The body (decoded, if a content coding applies) is longer than the cap allows."""


class Target:
    """One URL to GET, in the forms the span, the Host header and aiohttp want.

    Immutable in practice and built once per page URL (the client caches them),
    so aiohttp never parses the URL's text on the hot path.
    """

    __slots__ = ("address", "host", "url")

    def __init__(self, url: httpx.URL) -> None:
        self.url = url
        # Host as httpx's request sets it (RFC 9110 §7.2): with the port when not the default.
        self.host = url.netloc.decode("ascii")
        # What aiohttp made of the text the transport gave it.
        self.address = URL(str(url))


class Wire(Protocol):
    async def get(self, target: Target, bearer: str, max_body: int) -> Answer:
        """GET ``target`` with the bearer token; the answer with its body read under the cap.

        Raises ``BodyOverCap``, or an ``httpx.TransportError`` when no answer came.
        """
        ...  # pragma: no cover


def framing(raw_headers: RawHeaders) -> tuple[int | None, bool]:
    """The declared Content-Length, when it is one number, and whether a content coding applies.

    One pass over the raw header bytes. ``httpx.Headers.get`` and ``get_list``
    first work out the headers' text encoding by decoding every one of them,
    then scan them all for the name: about 26k instructions for the two
    look-ups, a tenth of that here. Several Content-Length fields (RFC 9110
    §8.6) give no declared length, as their comma-joined text did; the cap
    still holds as the body arrives.
    """
    lengths: list[bytes] = []
    coded = False
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered == b"content-length":
            lengths.append(value)
        elif lowered == b"content-encoding":
            coded = True
    if len(lengths) == 1 and lengths[0].isdigit():
        return int(lengths[0]), coded
    return None, coded


async def _capped(chunks: AsyncIterable[bytes], max_body: int) -> bytes:
    """The chunks joined, refusing them once they pass ``max_body`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_body:
            raise BodyOverCap
        parts.append(chunk)
    return b"".join(parts)


def _decoded(
    status: int, raw_headers: RawHeaders, raw: httpx.AsyncByteStream
) -> AsyncIterable[bytes]:
    """The body of a response with a content coding (RFC 9110 §8.4), decoded by httpx as before."""
    return httpx.Response(status, headers=raw_headers, stream=raw).aiter_bytes()


# -- aiohttp ---------------------------------------------------------------------------------

# aiohttp's errors as httpx's, so the client reads one exception tree whichever
# wire is in use; first match wins, anything else is raised as it is. httpx
# names them as its own transport would: a refused connection or a failed name
# lookup is a ConnectError ("unreachable"), not a timeout.
_TRANSLATED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
)


def translation(foreign: type[Exception]) -> type[httpx.TransportError] | None:
    """The httpx error class that stands for aiohttp's; None when it is not aiohttp's to say."""
    for theirs, ours in _TRANSLATED:
        if issubclass(foreign, theirs):
            return ours
    return None


def open_session(max_connections: int) -> aiohttp.ClientSession:
    """A pooled session for one provider, set up as the httpx-aiohttp transport set up its own.

    Certificates are checked against certifi's roots, as httpx does; cookies are
    never kept (see the module docstring).
    """
    tls: ssl.SSLContext = httpx.create_ssl_context(trust_env=False)
    connector = aiohttp.TCPConnector(
        keepalive_timeout=KEEPALIVE_EXPIRY, ssl=tls, limit=max_connections
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class _ContentStream(httpx.AsyncByteStream):
    """An aiohttp response's raw body as an httpx stream, for httpx's decoders."""

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._content.iter_chunked(_CHUNK_SIZE):
            yield chunk


class AiohttpWire:
    """Provider calls on an ``aiohttp.ClientSession`` (see the module docstring)."""

    def __init__(
        self, session: aiohttp.ClientSession, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> None:
        self._session = session
        # Named as httpx.Headers.items() named them for aiohttp: lower case, and one
        # name given twice in different cases sent once, its values comma-joined.
        self._headers = dict(httpx.Headers(headers).items())
        # The transport's reading of httpx's timeouts: the pool wait is aiohttp's
        # ``connect``, the connect and read timeouts its socket ones.
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )

    async def get(self, target: Target, bearer: str, max_body: int) -> Answer:
        headers = {
            "host": target.host,
            **self._headers,
            "authorization": f"Bearer {bearer}",
            "accept": "application/json",
        }
        try:
            async with self._session.request(
                "GET",
                target.address,
                headers=headers,
                allow_redirects=False,  # a redirect could leave the provider's origin
                auto_decompress=False,  # httpx's decoders, below, as before
                compress=False,
                timeout=self._timeout,
            ) as response:
                raw_headers = response.raw_headers
                declared, coded = framing(raw_headers)
                if declared is not None and declared > max_body:
                    raise BodyOverCap
                if coded:
                    stream = _decoded(
                        response.status, raw_headers, _ContentStream(response.content)
                    )
                    body = await _capped(stream, max_body)
                elif declared is not None:
                    # aiohttp's parser reads exactly the declared length (RFC 9112 §6.3;
                    # it refuses a Content-Length beside a Transfer-Encoding).
                    body = await response.read()
                else:
                    body = await _capped(response.content.iter_chunked(_CHUNK_SIZE), max_body)
                return Answer(response.status, raw_headers, body)
        except BodyOverCap:
            raise
        except Exception as exc:
            ours = translation(type(exc))
            if ours is None:
                raise
            raise ours(str(exc)) from exc


# -- an httpx transport ----------------------------------------------------------------------

_NO_BODY = httpx.ByteStream(b"")  # immutable: one serves every request


class HttpxWire:
    """Provider calls through an ``httpx.AsyncBaseTransport`` (tests, stand-ins)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> None:
        self._transport = transport
        self._headers = dict(headers)
        # The timeouts as httpx.AsyncClient hands them to its transport.
        self._extensions = {"timeout": timeout.as_dict()}

    async def get(self, target: Target, bearer: str, max_body: int) -> Answer:
        response = await self._transport.handle_async_request(self._request(target, bearer))
        try:
            raw_headers = response.headers.raw
            declared, coded = framing(raw_headers)
            if declared is not None and declared > max_body:
                raise BodyOverCap
            stream = response.stream
            if coded or not isinstance(stream, httpx.AsyncByteStream):
                # aiter_bytes decodes; a plain stream is the body as it is, without
                # the decoder and its two chunker layers.
                body = await _capped(response.aiter_bytes(), max_body)
            else:
                body = await _capped(stream, max_body)
        finally:
            await response.aclose()
        return Answer(response.status_code, raw_headers, body)

    def _request(self, target: Target, bearer: str) -> httpx.Request:
        """The GET, with exactly the headers httpx.AsyncClient sent.

        Built in httpx's transport-level form (``stream=``), which adds no headers of
        its own: the plain form looks up Host, Content-Length, Transfer-Encoding and
        Content-Type by raising and catching KeyError and then copies every header
        again. So Host is given here, as the plain form sets it (RFC 9110 §7.2), and
        a GET has no body to describe. ``read()`` loads the empty body, so that the
        transport sends none at all rather than streaming an empty one.
        """
        request = httpx.Request(
            "GET",
            target.url,
            headers={
                "Host": target.host,
                **self._headers,
                "Authorization": f"Bearer {bearer}",
                "Accept": "application/json",
            },
            stream=_NO_BODY,
            extensions=self._extensions,
        )
        request.read()
        return request
