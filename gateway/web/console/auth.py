"""Signing in to the console, signing out, and the guard every console page sits behind.

* **Sign-in** takes the auditor's credential (``lga_…``) once, checks it with
  :func:`gateway.callers.authenticate` (the same check as the JSON API), and
  opens a server-side session (:mod:`~gateway.web.console.sessions`). The key
  is neither stored nor shown again: the field is a password field and a
  refused sign-in never echoes it. Attempts are throttled per client address
  and per key prefix (:mod:`~gateway.web.console.sign_in_throttle`): over the
  limit, the sign-in page again with 429 and ``Retry-After``, and no lookup.
* **Cookies** are ``HttpOnly`` (no script may read them; the pages have no
  script at all), ``SameSite=Strict`` (no cross-site request carries them:
  RFC 6265bis §5.4.7) and ``Secure`` when the public URL is https, scoped to
  ``Path=/console``.
* **CSRF** (OWASP ASVS 4.2.2): every state-changing form carries an HMAC of
  the session's stored hash (:mod:`gateway.web.csrf`), checked before the page
  runs. The sign-in form, before any session, is bound the same way to a
  short-lived random pre-sign-in cookie (login CSRF).
* **Errors** become pages: a :class:`~gateway.errors.LinkgateError` raised by
  a service renders the console's error page with its status, never a 500.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.auditors import record_refusal
from gateway.callers import CallerKind, authenticate
from gateway.errors import LinkgateError, Unauthenticated
from gateway.runtime import Runtime
from gateway.storage.schema import console_tables
from gateway.web import csrf
from gateway.web.console.sessions import (
    ABSOLUTE_LIFETIME,
    COOKIE,
    ConsoleSession,
    ConsoleSessionStore,
    hash_session_id,
)
from gateway.web.console.sign_in_throttle import SignInThrottle
from gateway.web.pages import render

__all__ = [
    "MAX_FORM_BYTES",
    "Page",
    "console_page",
    "runtime_of",
    "sign_in",
    "sign_in_form",
    "sign_out",
    "signed_in",
]

log = structlog.get_logger(__name__)

PATH = "/console"
SIGN_IN_COOKIE = "linkgate_console_sign_in"
SIGN_IN_TTL = 3600
MAX_FORM_BYTES = 64 * 1024

Page = Callable[[Request, ConsoleSession], Awaitable[Response]]


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


def session_store(runtime: Runtime) -> ConsoleSessionStore:
    return ConsoleSessionStore(runtime.engine, console_tables)


def _https(runtime: Runtime) -> bool:
    return runtime.settings.public_url.startswith("https://")


def _csrf_for(runtime: Runtime, binding: str) -> str:
    return csrf.token_for(runtime.settings.secret_key, f"console/{binding}")


def _csrf_ok(runtime: Runtime, binding: str, presented: object) -> bool:
    return csrf.is_valid(
        runtime.settings.secret_key,
        f"console/{binding}",
        presented if isinstance(presented, str) else None,
    )


def console_page(
    name: str, session: ConsoleSession, *, runtime: Runtime, status_code: int = 200, **context: Any
) -> Response:
    """A console page with what every one needs: who is signed in and the CSRF token."""
    return render(
        name,
        status_code=status_code,
        auditor=session.caller,
        customers=sorted(session.caller.customers),
        csrf_field=csrf.FIELD,
        csrf_token=_csrf_for(runtime, session.key),
        **context,
    )


def refused(title: str, message: str, *, status_code: int) -> Response:
    return render("console/error.html", status_code=status_code, title=title, message=message)


def signed_in(page: Page) -> Callable[[Request], Awaitable[Response]]:
    """Run ``page`` for a signed-in auditor; others go to the sign-in page.

    A POST must carry the session's CSRF token. A service error becomes a page.
    """

    async def endpoint(request: Request) -> Response:
        runtime = runtime_of(request)
        session = await session_store(runtime).get(request.cookies.get(COOKIE))
        if session is None:
            if request.method == "GET":
                return RedirectResponse(f"{PATH}/sign-in", status_code=303)
            return refused(
                "Signed out",
                "Your session has ended. Sign in again, then repeat what you were doing.",
                status_code=401,
            )
        if request.method == "POST":
            if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
                return refused("Request refused", "The form is too large.", status_code=413)
            form = await request.form()
            if not _csrf_ok(runtime, session.key, form.get(csrf.FIELD)):
                return refused(
                    "Request refused",
                    "This form has expired or did not come from the console. Reload the page.",
                    status_code=403,
                )
            # PostgreSQL's text cannot hold a NUL: it would refuse the statement
            # as if the database were down. No field here means one.
            if any(isinstance(value, str) and "\x00" in value for _, value in form.multi_items()):
                return refused(
                    "Request refused",
                    "A field carries a NUL character, which no field here may hold.",
                    status_code=400,
                )
        try:
            return await page(request, session)
        except LinkgateError as exc:
            if exc.refused_customer:
                # As the API's problem handler does: a refused attempt on a
                # customer's data lands in that customer's audit log, or fails closed.
                try:
                    await record_refusal(runtime, session.caller, exc.refused_customer, exc)
                except LinkgateError as failure:
                    exc = failure
            return console_page(
                "console/error.html",
                session,
                runtime=runtime,
                status_code=exc.status,
                title=exc.title,
                message=exc.detail,
            )

    return endpoint


# -- sign-in and sign-out ----------------------------------------------------------------


def _sign_in_page(
    runtime: Runtime,
    binding: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    return render(
        "console/sign_in.html",
        status_code=status_code,
        headers=headers,
        title="Sign in to the auditor console",
        csrf_field=csrf.FIELD,
        csrf_token=_csrf_for(runtime, f"sign-in/{hash_session_id(binding)}"),
        error=error,
        notice=notice,
    )


async def sign_in_form(request: Request) -> Response:
    runtime = runtime_of(request)
    if await session_store(runtime).get(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(f"{PATH}/events", status_code=303)
    binding = request.cookies.get(SIGN_IN_COOKIE) or ""
    fresh = len(binding) < 32 or len(binding) > 128
    if fresh:
        binding = secrets.token_urlsafe(32)
    signed_out = request.query_params.get("signed_out") == "1"
    response = _sign_in_page(runtime, binding, notice="You are signed out." if signed_out else None)
    if fresh:
        response.set_cookie(
            SIGN_IN_COOKIE,
            binding,
            max_age=SIGN_IN_TTL,
            httponly=True,
            secure=_https(runtime),
            samesite="strict",
            path=PATH,
        )
    return response


async def sign_in(request: Request) -> Response:
    runtime = runtime_of(request)
    binding = request.cookies.get(SIGN_IN_COOKIE) or ""
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        return refused("Request refused", "The form is too large.", status_code=413)
    form = await request.form()
    if not binding or not _csrf_ok(
        runtime, f"sign-in/{hash_session_id(binding)}", form.get(csrf.FIELD)
    ):
        return refused(
            "Request refused",
            "This sign-in form has expired or did not come from the console. Reload the page.",
            status_code=403,
        )
    key = form.get("credential")
    # Counted after the CSRF check: a page elsewhere making visitors' browsers
    # post here cannot use up their allowance.
    throttle: SignInThrottle = request.state.sign_in_throttle
    client = request.client.host if request.client else None
    throttled = throttle.attempt(client, key if isinstance(key, str) else "")
    if throttled is not None:
        log.info("console.sign_in_throttled", limit=throttled.limit)
        seconds = throttled.retry_after
        return _sign_in_page(
            runtime,
            binding,
            status_code=429,  # RFC 6585 §4
            headers={"Retry-After": str(seconds)},
            error=(
                f"Too many sign-in attempts. Wait {seconds} second{'s' if seconds != 1 else ''},"
                " then try again."
            ),
        )
    try:
        if not isinstance(key, str) or not key.strip() or len(key) > 256:
            raise Unauthenticated("no credential")
        caller = await authenticate(runtime.engine, f"Bearer {key.strip()}", CallerKind.AUDITOR)
    except Unauthenticated:
        # The reason (unknown, revoked, a service key) is not told: the same
        # answer for every wrong key. The key is never echoed.
        log.info("console.sign_in_refused")
        return _sign_in_page(
            runtime,
            binding,
            status_code=401,
            error="That credential was not accepted. Paste an active auditor credential (lga_…).",
        )
    session_id, _expires = await session_store(runtime).create(caller)
    log.info("console.signed_in", caller_id=caller.id)
    response = RedirectResponse(f"{PATH}/events", status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(ABSOLUTE_LIFETIME.total_seconds()),
        httponly=True,
        secure=_https(runtime),
        samesite="strict",
        path=PATH,
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=PATH)
    return response


async def _sign_out(request: Request, session: ConsoleSession) -> Response:
    await session_store(runtime_of(request)).end(session.key)
    log.info("console.signed_out", caller_id=session.caller.id)
    response = RedirectResponse(f"{PATH}/sign-in?signed_out=1", status_code=303)
    response.delete_cookie(
        COOKIE, path=PATH, httponly=True, samesite="strict", secure=_https(runtime_of(request))
    )
    return response


sign_out = signed_in(_sign_out)
