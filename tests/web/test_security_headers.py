"""Security headers: the defaults on every response, CSP and no-store on HTML only."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from gateway.web.security_headers import CONTENT_SECURITY_POLICY, SecurityHeadersMiddleware


async def _headers_sent(app_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": app_headers})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await SecurityHeadersMiddleware(app)({"type": "http", "headers": []}, receive, send)
    headers: list[tuple[bytes, bytes]] = sent[0]["headers"]
    return headers


async def test_an_html_page_gets_every_header() -> None:
    """HTML gets the defaults, the content security policy and no-store."""
    headers = await _headers_sent([(b"content-type", b"text/html; charset=utf-8")])

    assert headers == [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"cache-control", b"no-store"),
    ]


async def test_json_gets_the_defaults_only() -> None:
    """A JSON answer gets the defaults but no page policy and no cache rule."""
    headers = await _headers_sent([(b"content-type", b"application/json")])

    assert headers == [
        (b"content-type", b"application/json"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


async def test_a_header_the_application_set_is_kept_not_doubled() -> None:
    """The application's own referrer policy stands; the other defaults are added."""
    own = (b"referrer-policy", b"same-origin")
    headers = await _headers_sent([(b"content-type", b"application/json"), own])

    assert headers == [
        (b"content-type", b"application/json"),
        own,
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
    ]
