"""Signed, opaque page cursors (pure: no clock, no I/O).

A cursor carries where the provider's next page starts (its page token, an
offset, or a next link) and is bound to the connection, the resource and the
resource parameters it was issued for. It is ``base64url(payload).base64url(mac)``
with ``mac = HMAC-SHA256(k, payload)`` (RFC 2104) and ``k`` derived from the
gateway's secret with HKDF (RFC 5869) under its own label, so a cursor key is
never the key of anything else. A changed byte, or a cursor replayed on another
connection, resource or parameter set, is refused as ``invalid-cursor``: the
caller can never steer the gateway to a page, let alone a URL, it chose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import InvalidCursor

__all__ = ["Binding", "CursorKey", "PagePosition", "same_origin"]

_HKDF_INFO = b"linkgate.cursor.v1"
_VERSION = 1
MAX_CURSOR_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class PagePosition:
    """Where the provider's next page starts; exactly one field is set."""

    token: str | None = None  # PageStyle.PAGE_TOKEN
    offset: int | None = None  # PageStyle.OFFSET
    link: str | None = None  # PageStyle.NEXT_LINK: an absolute URL at the provider


@dataclass(frozen=True, slots=True)
class Binding:
    """What a cursor may be used for."""

    connection_id: str
    resource: str
    params: Mapping[str, str]

    def encoded(self) -> list[object]:
        return [self.connection_id, self.resource, sorted(self.params.items())]


class CursorKey:
    """Signs and opens cursors with a key derived from the gateway's secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            secret
        )

    def __repr__(self) -> str:
        return "CursorKey(<secret>)"

    def sign(self, binding: Binding, position: PagePosition) -> str:
        body = {"v": _VERSION, "b": binding.encoded(), "t": position.token}
        if position.offset is not None:
            body["o"] = position.offset
        if position.link is not None:
            body["l"] = position.link
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def open(self, cursor: str, binding: Binding) -> PagePosition:
        """The position ``cursor`` carries, or ``InvalidCursor``."""
        if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise InvalidCursor("the cursor is not one this gateway issued")
        encoded_payload, encoded_mac = cursor.split(".")
        try:
            payload = _unb64(encoded_payload)
            mac = _unb64(encoded_mac)
        except (binascii.Error, ValueError):
            raise InvalidCursor("the cursor is not one this gateway issued") from None
        # Constant-time comparison: no timing oracle on the MAC (RFC 2104 §5 spirit).
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidCursor("the cursor is not one this gateway issued")
        body = json.loads(payload)
        if body.get("v") != _VERSION or body.get("b") != _roundtrip(binding.encoded()):
            raise InvalidCursor(
                "the cursor belongs to another connection, resource or set of parameters"
            )
        return PagePosition(token=body.get("t"), offset=body.get("o"), link=body.get("l"))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def same_origin(url: str, base: str) -> bool:
    """RFC 6454 §4 origin (scheme, host, port) equality, for next links a provider returns."""
    a, b = urlsplit(url), urlsplit(base)
    return (
        a.scheme in ("http", "https")
        and (a.scheme, a.hostname, a.port or _default_port(a.scheme))
        == (b.scheme, b.hostname, b.port or _default_port(b.scheme))
        and a.username is None
        and a.password is None
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _roundtrip(value: object) -> object:
    """``value`` as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
