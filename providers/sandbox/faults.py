"""Faults a test can arm so that the next response misbehaves the way real providers do.

Each armed fault fires on the next matching request and is then spent (API
faults may be armed for several requests). They are set through
``POST /_sandbox/faults``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_E = TypeVar("_E", bound=enum.StrEnum)

DEFAULT_RETRY_AFTER = 1  # seconds announced in Retry-After with a 429


class IdTokenFault(enum.StrEnum):
    """How the next ID token is broken; each must make OIDC Core §3.1.3.7 validation fail."""

    WRONG_AUD = "wrong_aud"
    WRONG_ISS = "wrong_iss"
    WRONG_NONCE = "wrong_nonce"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"
    ALG_NONE = "alg_none"
    UNKNOWN_KID = "unknown_kid"


class AuthorizeFault(enum.StrEnum):
    """How the next authorization response's RFC 9207 ``iss`` parameter is broken."""

    WRONG_ISS = "wrong_iss"
    MISSING_ISS = "missing_iss"


class RefreshFault(enum.StrEnum):
    """The next refresh fails as if the user revoked the grant (RFC 6749 §5.2)."""

    INVALID_GRANT = "invalid_grant"


class ApiFault(enum.StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After (RFC 6585 §4)
    UNAVAILABLE = "unavailable"  # 503


class FaultRequestError(ValueError):
    """A fault request named something the sandbox cannot do."""


@dataclass(frozen=True, slots=True)
class ArmedApiFault:
    kind: ApiFault
    retry_after: int


class Faults:
    """The armed faults; safe to use from concurrent requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._id_token: IdTokenFault | None = None
        self._authorize: AuthorizeFault | None = None
        self._refresh: RefreshFault | None = None
        self._api: ArmedApiFault | None = None
        self._api_remaining = 0

    def arm(self, request: Mapping[str, Any]) -> None:
        """Arm what ``request`` names, e.g. ``{"id_token": "wrong_aud"}``; all or nothing."""
        unknown = set(request) - {"id_token", "authorize", "refresh", "api", "times", "retry_after"}
        if unknown:
            raise FaultRequestError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        id_token = _member(IdTokenFault, request.get("id_token"), "id_token")
        authorize = _member(AuthorizeFault, request.get("authorize"), "authorize")
        refresh = _member(RefreshFault, request.get("refresh"), "refresh")
        api = _member(ApiFault, request.get("api"), "api")
        times = _positive(request.get("times", 1), "times")
        retry_after = _positive(request.get("retry_after", DEFAULT_RETRY_AFTER), "retry_after")
        with self._lock:
            if id_token is not None:
                self._id_token = id_token
            if authorize is not None:
                self._authorize = authorize
            if refresh is not None:
                self._refresh = refresh
            if api is not None:
                self._api = ArmedApiFault(kind=api, retry_after=retry_after)
                self._api_remaining = times

    def clear(self) -> None:
        with self._lock:
            self._id_token = self._authorize = self._refresh = self._api = None
            self._api_remaining = 0

    def take_id_token(self) -> IdTokenFault | None:
        with self._lock:
            fault, self._id_token = self._id_token, None
            return fault

    def take_authorize(self) -> AuthorizeFault | None:
        with self._lock:
            fault, self._authorize = self._authorize, None
            return fault

    def take_refresh(self) -> RefreshFault | None:
        with self._lock:
            fault, self._refresh = self._refresh, None
            return fault

    def take_api(self) -> ArmedApiFault | None:
        with self._lock:
            fault = self._api
            if fault is None:
                return None
            self._api_remaining -= 1
            if self._api_remaining <= 0:
                self._api = None
            return fault

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id_token": self._id_token,
                "authorize": self._authorize,
                "refresh": self._refresh,
                "api": self._api.kind if self._api else None,
                "api_remaining": self._api_remaining,
            }


def _member(kind: type[_E], value: object, key: str) -> _E | None:
    if value is None:
        return None
    try:
        return kind(str(value))
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise FaultRequestError(f"{key} must be one of: {choices}") from None


def _positive(value: object, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FaultRequestError(f"{key} must be a positive integer")
    return value
