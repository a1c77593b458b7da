"""The connect portal: pick a provider, go through its consent, land on a clear result."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.connect.flow import BROWSER_COOKIE
from gateway.errors import ConnectFlowError, LinkgateError
from gateway.runtime import Runtime
from gateway.web.pages import render


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


async def portal(request: Request) -> Response:
    runtime = _runtime(request)
    token = request.path_params["token"]
    try:
        session = await runtime.sessions.by_token(token)
    except LinkgateError as exc:
        return render(
            "error.html", status_code=exc.status, title="Link expired", message=exc.detail
        )
    connections = await runtime.connections.list(session.customer_id)
    return render(
        "portal.html",
        title="Link your accounts",
        token=token,
        session=session,
        providers=runtime.connect.offered(session),
        connections=connections,
    )


async def start(request: Request) -> Response:
    runtime = _runtime(request)
    try:
        started = await runtime.connect.start(
            request.path_params["token"],
            request.path_params["provider"],
            request.cookies.get(BROWSER_COOKIE),
        )
    except LinkgateError as exc:
        return render(
            "error.html", status_code=exc.status, title="Cannot connect", message=exc.detail
        )
    response = RedirectResponse(started.redirect_url, status_code=303)
    # Binds the round trip to this browser (RFC 9700 §4.7.1). Lax: the
    # provider's redirect back is a top-level GET navigation, which Lax allows.
    response.set_cookie(
        BROWSER_COOKIE,
        started.browser_binding,
        max_age=runtime.settings.state_ttl,
        httponly=True,
        secure=runtime.settings.public_url.startswith("https://"),
        samesite="lax",
        path="/",
    )
    return response


async def callback(request: Request) -> Response:
    runtime = _runtime(request)
    headers = {"Referrer-Policy": "no-referrer"}  # the URL carries a code
    try:
        finished = await runtime.connect.finish(
            dict(request.query_params), request.cookies.get(BROWSER_COOKIE)
        )
    except ConnectFlowError as exc:
        return render(
            "error.html", status_code=400, headers=headers, title="Not linked", message=exc.detail
        )
    except LinkgateError as exc:
        return render(
            "error.html",
            status_code=exc.status,
            headers=headers,
            title="Not linked",
            message=exc.detail,
        )
    connection = finished.connection
    if finished.session.return_url:
        query = urlencode({"connection_id": connection.id, "status": "linked"})
        separator = "&" if "?" in finished.session.return_url else "?"
        return RedirectResponse(
            finished.session.return_url + separator + query, status_code=303, headers=headers
        )
    return render(
        "result.html",
        headers=headers,
        title="Account linked",
        connection=connection,
        created=finished.created,
    )
