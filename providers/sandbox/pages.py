"""The HTML pages of the sandbox: the sign-in/consent page and the error page."""

from __future__ import annotations

from collections.abc import Sequence

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
) -> HTMLResponse:
    html = _templates.get_template("consent.html").render(
        request_id=request_id,
        client_id=client_id,
        scopes=[(scope, SCOPE_DESCRIPTIONS.get(scope, scope)) for scope in scopes],
        accounts=accounts,
        action=action,
    )
    return HTMLResponse(html, headers=_PAGE_HEADERS)


def error_page(message: str, status_code: int = 400) -> HTMLResponse:
    html = _templates.get_template("error.html").render(message=message)
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)
