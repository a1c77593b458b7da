"""Security headers on every HTML response (pure ASGI middleware)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No scripts at all, styles only from our own inline <style>, no framing, forms
# post only to us (OWASP ASVS 14.4).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# On every response, unless the application set the header itself.
_DEFAULTS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_DEFAULT_NAMES = frozenset(name for name, _ in _DEFAULTS)
_HTML_ONLY = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cache-control", b"no-store"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                defaults: tuple[tuple[bytes, bytes], ...] = _DEFAULTS
                content_type = b""
                for name, value in headers:  # one pass over what the application set
                    if name == b"content-type":
                        content_type = value
                    elif name in _DEFAULT_NAMES:
                        defaults = tuple(h for h in defaults if h[0] != name)
                headers += defaults
                if content_type.startswith(b"text/html"):
                    headers += _HTML_ONLY
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
