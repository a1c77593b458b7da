"""The HTML pages of the sandbox: the sign-in/consent page and the error page."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from providers.sandbox.demo_data import DemoAccount
from providers.sandbox.scopes import SCOPE_DESCRIPTIONS

_templates = Environment(
    loader=PackageLoader("providers.sandbox", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# The consent page must not be framed by another site (clickjacking, RFC 6749 §10.13).
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Cache-Control": "no-store",
}


def consent_page(
    *,
    request_id: str,
    client_id: str,
    scopes: Sequence[str],
    accounts: Sequence[DemoAccount],
    action: str,
    redirect_uri: str,
) -> HTMLResponse:
    html = _templates.get_template("consent.html").render(
        request_id=request_id,
        client_id=client_id,
        scopes=[(scope, SCOPE_DESCRIPTIONS.get(scope, scope)) for scope in scopes],
        accounts=accounts,
        action=action,
    )
    # CSP form-action also governs the redirects that follow a submission
    # (CSP Level 3 §6.4.1), so the client's registered redirect URI must be
    # allowed, or browsers stop on this page after Approve.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect_uri))
    policy = _PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {origin}"
    )
    return HTMLResponse(html, headers={**_PAGE_HEADERS, "Content-Security-Policy": policy})


def error_page(message: str, status_code: int = 400) -> HTMLResponse:
    html = _templates.get_template("error.html").render(message=message)
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)
