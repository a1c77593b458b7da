"""A gate in front of a provider's token endpoint: hold the next refresh where a test says.

The gateway's refresh has three moments a crash can fall between: the token
request is on its way (the provider has not processed it), the provider has
rotated the refresh token but its answer has not reached the gateway, and the
gateway has the answer. :class:`TokenGate` wraps the sandbox's ASGI app and,
for the next ``grant_type=refresh_token`` request only, stops at the moment a
test armed and tells the test through :attr:`TokenGate.reached` (a
``threading.Event``: the sandbox runs on a server thread of its own). The
request then waits for :attr:`TokenGate.release`, so the test can kill the
gateway at exactly that point; no sleeps are involved.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]
ASGIApp = Callable[..., Any]


class Hold(enum.Enum):
    UNPROCESSED = "unprocessed"  # the provider never sees the request
    ANSWER = "answer"  # the provider rotated the token; its answer never leaves
    PASS = "pass"  # the answer goes out; ``before_answer`` runs first


class TokenGate:
    """Pure ASGI middleware around a provider app; one armed hold at a time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reached = threading.Event()
        self.release = threading.Event()
        self.answers: list[bytes] = []  # bodies of the refresh answers it held or passed
        self._hold: Hold | None = None
        self._before_answer: Callable[[], None] = lambda: None

    def arm(self, hold: Hold, before_answer: Callable[[], None] | None = None) -> None:
        self._hold = hold
        self._before_answer = before_answer or (lambda: None)

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/token" or self._hold is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        replay = _replay(body, receive)
        if b"grant_type=refresh_token" not in body:
            await self.app(scope, replay, send)
            return
        hold, self._hold = self._hold, None  # one request only
        if hold is Hold.UNPROCESSED:
            self.reached.set()
            await asyncio.to_thread(self.release.wait)
            await _gone(send)
            return
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, replay, keep)  # the provider processes it: the token rotates
        self.answers.append(b"".join(m.get("body", b"") for m in answer))
        if hold is Hold.ANSWER:
            self.reached.set()
            await asyncio.to_thread(self.release.wait)
            await _gone(send)
            return
        self._before_answer()
        for message in answer:
            await send(message)
        self.reached.set()


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay


async def _gone(send: Any) -> None:
    """Answer a client that is no longer there (the server discards it)."""
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b""})
