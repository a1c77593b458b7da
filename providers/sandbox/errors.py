"""OAuth protocol errors, one class per RFC 6749 error code.

::

    OAuthError
    ├── InvalidRequest           400  RFC 6749 §4.1.2.1, §5.2
    ├── InvalidClient            401  RFC 6749 §5.2 (with WWW-Authenticate)
    ├── InvalidGrant             400  RFC 6749 §5.2
    ├── UnauthorizedClient       400
    ├── UnsupportedGrantType     400
    ├── UnsupportedResponseType  400  RFC 6749 §4.1.2.1
    ├── InvalidScope             400
    └── AccessDenied             403  RFC 6749 §4.1.2.1 (sent by redirect)
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    """An error the server answers with the RFC 6749 error JSON or error redirect."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def as_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"
    status_code = 400


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    status_code = 400


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    status_code = 400


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    status_code = 400


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    status_code = 400


class InvalidScope(OAuthError):
    error = "invalid_scope"
    status_code = 400


class AccessDenied(OAuthError):
    error = "access_denied"
    status_code = 403
