"""Abuse limits: requests per key, request size, and how long connect links and states live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.request_limits import RequestSizeLimit, TokenBucket
from gateway.storage import connect_sessions, create_engine, writer
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack, build_stack

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_bucket_grants_its_burst_then_says_how_long_to_wait() -> None:
    """Three at once, the fourth waits one refill; time refills it."""
    bucket = TokenBucket(rate=0.5, burst=3.0, tokens=3.0, updated=100.0)

    granted = [bucket.take(100.0) for _ in range(3)]
    refused = bucket.take(100.0)
    later = bucket.take(102.0)  # two seconds at 0.5/s: one token back

    assert granted == [0.0, 0.0, 0.0]
    assert refused == 2.0
    assert later == 0.0


def _assert_problem(response: httpx.Response, status: int, problem: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + problem)


@pytest.fixture
async def limited(database_url: str, servers: Servers) -> Stack:
    """A gateway allowing a burst of 3 per key, refilled too slowly to matter in a test."""
    return await build_stack(
        database_url, servers, auto_approve=True, rate_limit=0.001, rate_limit_burst=3
    )


@sqlite_only
async def test_a_key_over_its_rate_gets_429_with_retry_after(limited: Stack) -> None:
    """The fourth request of one key is refused; another key is still served."""
    params = {"customer_id": CUSTOMER}
    async with limited.api() as api:
        served = [(await api.get("/v1/connections", params=params)).status_code for _ in range(3)]
        refused = await api.get("/v1/connections", params=params)
    async with limited.api(limited.other_key) as other:
        neighbour = await other.get("/v1/connections", params={"customer_id": OTHER_CUSTOMER})

    assert served == [200, 200, 200]
    _assert_problem(refused, 429, "rate-limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert neighbour.status_code == 200


@sqlite_only
async def test_the_api_description_lists_the_limits_answers(limited: Stack) -> None:
    """A client generated from /openapi.json knows every operation may meet the limits."""
    async with limited.api() as api:
        document = (await api.get("/openapi.json")).json()
    operations = [
        operation
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
    ]
    assert all("431" in operation["responses"] for operation in operations)
    assert all(
        "413" in operation["responses"] for operation in operations if "requestBody" in operation
    )
    keyed = [operation for operation in operations if operation.get("security") != []]
    assert keyed
    assert all("429" in operation["responses"] for operation in keyed)


@sqlite_only
async def test_bodies_and_headers_over_the_limits_are_refused(stack: Stack) -> None:
    """A body over 1 MiB (declared or chunked) is a 413; 16 KiB of headers is a 431."""
    huge = b'{"customer_id": "' + b"a" * (2 * 1024 * 1024) + b'"}'

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    async with stack.api() as api:
        declared = await api.post(
            "/v1/connect-sessions", content=huge, headers={"content-type": "application/json"}
        )
        streamed = await api.post(
            "/v1/connect-sessions", content=chunked(), headers={"content-type": "application/json"}
        )
        crowded = await api.get(
            "/v1/connections", params={"customer_id": CUSTOMER}, headers={"x-filler": "a" * 20_000}
        )
        normal = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})

    _assert_problem(declared, 413, "request-too-large")
    _assert_problem(streamed, 413, "request-too-large")
    _assert_problem(crowded, 431, "request-headers-too-large")
    assert normal.status_code == 201


@sqlite_only
async def test_a_deeply_nested_json_body_is_a_bad_request(stack: Stack) -> None:
    """20,000 nested arrays fit the size limits but not the parser's stack: 400, never a 500."""
    nested = b"[" * 20_000 + b"]" * 20_000
    async with stack.api() as api:
        answers = [
            await api.post(path, content=nested, headers={"content-type": "application/json"})
            for path in ("/v1/connect-sessions", "/v1/processor-requests")
        ]
        # A 500 would have closed the keep-alive connection; this one is still served.
        normal = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})

    for answer in answers:
        _assert_problem(answer, 400, "bad-request")
        assert answer.json()["detail"] == "the JSON body is nested too deeply"
    assert normal.status_code == 201


async def _read_body(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads its whole body, then answers 200 with how many bytes it got."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


async def _call_with_body(http_version: str, chunks: list[bytes]) -> list[Message]:
    limit = RequestSizeLimit(_read_body, max_header_bytes=16_384, max_body_bytes=100)
    scope = {"type": "http", "http_version": http_version, "path": "/", "headers": []}
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await limit(scope, receive, send)
    return sent


@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_a_body_without_length_headers_is_counted_beyond_http_1(http_version: str) -> None:
    """HTTP/2 and 3 may stream a body with no Content-Length: past the limit it is a 413."""
    over = await _call_with_body(http_version, [b"a" * 60, b"a" * 60])
    under = await _call_with_body(http_version, [b"a" * 60, b"a" * 30])

    assert over[0]["status"] == 413
    assert under[0]["status"] == 200
    assert under[1]["body"] == b"90"


async def test_a_connect_link_past_its_lifetime_opens_nothing(stack: Stack) -> None:
    """The link carries its expiry; once past it, the portal and the OAuth start refuse."""
    session = await stack.connect_session()
    expires_at = datetime.fromisoformat(session["expires_at"])
    assert expires_at - datetime.now(UTC) <= timedelta(seconds=stack.settings.connect_session_ttl)
    engine = create_engine(stack.settings.database_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(
                connect_sessions.update().values(
                    expires_at=datetime.now(UTC) - timedelta(seconds=1)
                )
            )
    finally:
        await engine.dispose()
    async with stack.browser() as browser:
        portal = await browser.get(session["connect_url"])
        start = await browser.get(f"{session['connect_url']}/sandbox")

    assert portal.status_code == 404, portal.text
    assert start.status_code == 404, start.text
    assert "location" not in start.headers
