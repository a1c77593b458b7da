"""Error pages: a browser on a web route gets a page, never problem+json.

Errors raised below the page handlers (the database unreachable, a path no
route has, a method a route does not take, a request refused by
:mod:`gateway.request_limits`, a crash) are answered in one place,
:mod:`gateway.problems`, as RFC 9457 problem+json. On the web routes
(:func:`is_page_path`: the connect portal, the OAuth callback, the auditor
console) :class:`ErrorPagesMiddleware` swaps such an answer for a small page:
the same status, the same ``Retry-After`` (and ``Allow`` on a 405, RFC 9110
§15.5.6), one sentence of what happened, one of what to do, and the trace id
to quote to support. Pages a handler renders itself pass through untouched.

Decided by route, not by ``Accept``:

* the JSON API's contract is problem+json with a stable ``type`` whatever the
  caller sends; generic clients send ``Accept: */*`` or even ``text/html``, and
  must not get a page instead of the problem they switch on;
* the web routes are only ever opened by a person in a browser (a link the
  customer's platform gave, a provider's redirect back, a console bookmark),
  whose ``Accept`` varies by browser, webview and navigation kind; a page that
  answers JSON to one of them is the failure this module exists for;
* one answer per URL needs no ``Vary: Accept`` and gives a cache nothing to mix up.

The page never repeats the URL: ``/connect/{token}`` carries a connect
session's token, and a 400 may have been caused by what the URL holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PROBLEM_CONTENT_TYPE
from gateway.observability import current_trace_id
from gateway.web.pages import render

__all__ = ["ErrorPagesMiddleware", "error_page", "is_page_path"]

CONSOLE = "/console"
PORTAL = "/connect"
CALLBACK = "/oauth/callback"

# Headers of the refused answer that the page keeps: when to come back, and
# which methods the route does take.
_KEPT_HEADERS = frozenset({b"retry-after", b"allow"})
_PROBLEM = PROBLEM_CONTENT_TYPE.encode()
_NO_TRACE = "0" * 32


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount + "/")


def is_page_path(path: str) -> bool:
    """Whether ``path`` belongs to the web pages (people in browsers), not the JSON API."""
    return _under(path, PORTAL) or _under(path, CONSOLE) or path == CALLBACK


@dataclass(frozen=True, slots=True)
class _Wording:
    title: str
    what_happened: str


_WORDING = {
    400: _Wording(
        "Request not understood",
        "The address or the form sent could not be read, so nothing was done.",
    ),
    404: _Wording(
        "Page not found",
        "There is no page at this address. Check that the whole link was copied.",
    ),
    405: _Wording(
        "Not available this way",
        "This page cannot be used that way. Use the links and buttons on Linkgate's pages.",
    ),
    413: _Wording("Request too large", "What was sent is larger than Linkgate accepts."),
    429: _Wording("Too many requests", "Too many requests came from here in a short time."),
    431: _Wording("Request too large", "What was sent is larger than Linkgate accepts."),
    503: _Wording(
        "Temporarily unavailable",
        "Linkgate cannot reach a service it depends on right now, so nothing was changed.",
    ),
}
_CLIENT_ERROR = _Wording("Request refused", "Linkgate refused this request.")
_SERVER_ERROR = _Wording(
    "Something went wrong",
    "Linkgate could not complete this request. It was not caused by anything you did.",
)


def _wording(status: int) -> _Wording:
    if status in _WORDING:
        return _WORDING[status]
    return _SERVER_ERROR if status >= 500 else _CLIENT_ERROR


def error_page(
    path: str, status: int, *, retry_after: str | None = None, trace_id: str = ""
) -> HTMLResponse:
    """The page for an error ``status`` on ``path``, without ``Retry-After`` itself.

    ``path`` chooses only the look (the console's or the portal's); it is not shown.
    """
    wording = _wording(status)
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
    return render(
        "http_error.html",
        status_code=status,
        layout="console/layout.html" if _under(path, CONSOLE) else "base.html",
        console=_under(path, CONSOLE),
        title=wording.title,
        what_happened=wording.what_happened,
        retry_after=seconds,
        trace_id=trace_id if trace_id and trace_id != _NO_TRACE else None,
    )


class ErrorPagesMiddleware:
    """On the web routes, answers a problem+json error with :func:`error_page` instead.

    Sits outside Starlette's own error middleware, so an unexpected 500 is
    turned into a page too, and inside :class:`~gateway.web.security_headers.
    SecurityHeadersMiddleware`, so the page gets its CSP like any other.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_page_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_page_for_problem(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the problem's body: the page was sent in its place
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
                if any(n == b"content-type" and v.startswith(_PROBLEM) for n, v in headers):
                    replaced = True
                    kept = [(n, v) for n, v in headers if n in _KEPT_HEADERS]
                    retry_after = next(
                        (v.decode("latin-1") for n, v in kept if n == b"retry-after"), None
                    )
                    page = error_page(
                        scope["path"],
                        message["status"],
                        retry_after=retry_after,
                        trace_id=current_trace_id(),
                    )
                    await send(
                        {
                            "type": "http.response.start",
                            "status": message["status"],
                            "headers": page.raw_headers + kept,
                        }
                    )
                    await send({"type": "http.response.body", "body": page.body})
                    return
            await send(message)

        await self.app(scope, receive, send_page_for_problem)
