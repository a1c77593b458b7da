"""The local sandbox provider: a real OAuth 2.0 + OIDC server with a small social API.

``PROVIDER`` declares it to the gateway like any other provider. The server
itself lives in :mod:`providers.sandbox.server` (``create_sandbox_app``) and is
run by ``python -m providers.sandbox`` or :mod:`providers.sandbox.runner`; it is
imported only by whoever serves it, never by the gateway's request path.
"""

from __future__ import annotations

from providers.sandbox.provider import PROVIDER, SCOPES

__all__ = ["PROVIDER", "SCOPES"]
