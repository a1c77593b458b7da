"""The connect portal: pick a provider, go through its consent, land on a clear result."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.connect.disconnect import disconnect as disconnect_connection
from gateway.connect.flow import BROWSER_COOKIE
from gateway.connect.sessions import ConnectSession
from gateway.connections import Connection
from gateway.errors import ConnectFlowError, LinkgateError
from gateway.runtime import Runtime
from gateway.web import csrf
from gateway.web.pages import render

_NOTICES = {
    "disconnected": "The account was disconnected and Linkgate deleted its tokens.",
    "disconnected-unconfirmed": (
        "The account was disconnected and Linkgate deleted its tokens. The provider did not"
        " confirm the revocation; you can also remove Linkgate's access in the provider's"
        " settings."
    ),
}


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
    offered = runtime.connect.offered(session)
    return render(
        "portal.html",
        title=f"Linked accounts of {session.customer_id}",
        token=token,
        session=session,
        providers=offered,
        scope_words={p.name: p.provider.scope_descriptions for p in offered},
        offered_names={p.name for p in offered},
        connections=connections,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
    )


async def _portal_connection(
    request: Request,
) -> tuple[Runtime, str, ConnectSession, Connection] | Response:
    """The session and one of its customer's connections, or an error page."""
    runtime = _runtime(request)
    token = request.path_params["token"]
    try:
        session = await runtime.sessions.by_token(token)
        connection = await runtime.connections.get(
            request.path_params["connection_id"], customers=frozenset({session.customer_id})
        )
    except LinkgateError as exc:
        return render("error.html", status_code=exc.status, title="Not found", message=exc.detail)
    return runtime, token, session, connection


async def confirm_disconnect(request: Request) -> Response:
    found = await _portal_connection(request)
    if isinstance(found, Response):
        return found
    runtime, token, session, connection = found
    configured = runtime.providers.get(connection.provider)
    revocable = bool(configured and configured.provider.oauth.endpoints.revoke_url)
    return render(
        "disconnect.html",
        title=f"Disconnect {connection.account_name}?",
        token=token,
        connection=connection,
        revocable=revocable,
        csrf_field=csrf.FIELD,
        csrf_token=csrf.token_for(runtime.settings.secret_key, session.id),
    )


async def disconnect(request: Request) -> Response:
    found = await _portal_connection(request)
    if isinstance(found, Response):
        return found
    runtime, token, session, connection = found
    form = await request.form()
    presented = form.get(csrf.FIELD)
    if not csrf.is_valid(
        runtime.settings.secret_key, session.id, presented if isinstance(presented, str) else None
    ):
        return render(
            "error.html",
            status_code=403,
            title="Request refused",
            message="This form has expired or did not come from the portal. Reload the page.",
        )
    revoked = await disconnect_connection(
        connection,
        actor_id=session.id,
        actor_class=None,
        store=runtime.connections,
        registry=runtime.providers,
        http=runtime.oauth_http,
    )
    notice = "disconnected" if revoked else "disconnected-unconfirmed"
    return RedirectResponse(f"/connect/{token}?notice={notice}", status_code=303)


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
    https = runtime.settings.public_url.startswith("https://")
    configured = runtime.providers.get(request.path_params["provider"])
    form_post = bool(configured and configured.provider.oauth.response_mode == "form_post")
    # Binds the round trip to this browser (RFC 9700 §4.7.1). Lax: the
    # provider's redirect back is a top-level GET navigation, which Lax allows.
    # A form_post provider (OAuth 2.0 Form Post Response Mode §2) comes back with
    # a cross-site POST, which a Lax cookie does not ride on (RFC 6265bis §5.4.7),
    # so for that round trip the cookie is SameSite=None; Secure. That stays safe:
    # the cookie is an HttpOnly random value that only proves "same browser" by
    # matching the hash stored with the single-use state; a forged cross-site POST
    # carries the victim's cookie but an attacker's state, and fails that match.
    # Browsers drop SameSite=None without Secure, so plain-http deployments keep Lax.
    response.set_cookie(
        BROWSER_COOKIE,
        started.browser_binding,
        max_age=runtime.settings.state_ttl,
        httponly=True,
        secure=https,
        samesite="none" if form_post and https else "lax",
        path="/",
    )
    return response


async def callback(request: Request) -> Response:
    runtime = _runtime(request)
    headers = {"Referrer-Policy": "no-referrer"}  # the URL carries a code
    form_post = request.method == "POST"
    try:
        if form_post:
            # OAuth 2.0 Form Post Response Mode §2: the same parameters, in the body.
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/x-www-form-urlencoded":
                raise ConnectFlowError("The provider's answer was not a form; start again.")
            form = await request.form()
            params = {key: value for key, value in form.items() if isinstance(value, str)}
        else:
            params = dict(request.query_params)
        finished = await runtime.connect.finish(
            params, request.cookies.get(BROWSER_COOKIE), form_post=form_post
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
