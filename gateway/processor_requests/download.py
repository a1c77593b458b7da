"""Signed, short-lived download links for request results.

A link carries ``<request id>.<file name>.<expiry>`` and an HMAC-SHA256 over
them (RFC 2104) under a key derived from the gateway's secret with HKDF
(RFC 5869) under its own label, so it can be handed to whoever must receive
the file (the End User, a regulator) without handing over a credential. It
opens one file of one request until it expires (GDPR Art. 32: exposure of a
link is bounded in time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import Forbidden

__all__ = ["DEFAULT_TTL", "DownloadKey", "LinkExpired"]

DEFAULT_TTL = timedelta(minutes=10)
_INFO = b"linkgate.processor-request-download.v1"


class LinkExpired(Forbidden):
    problem = "download-link-invalid"
    title = "The download link is invalid or has expired"


class DownloadKey:
    def __init__(self, secret: bytes) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)

    def __repr__(self) -> str:
        return "DownloadKey(<secret>)"

    def sign(
        self, request_id: str, name: str, *, now: datetime, ttl: timedelta = DEFAULT_TTL
    ) -> tuple[str, datetime]:
        expires = int((now + ttl).timestamp())
        payload = f"{request_id}\n{name}\n{expires}".encode()
        token = f"{expires}.{_b64(self._mac(payload))}"
        return token, datetime.fromtimestamp(expires, UTC)

    def check(self, token: str, request_id: str, name: str, *, now: datetime) -> None:
        """Nothing when the token opens this file now; 403 ``download-link-invalid`` otherwise."""
        expires_text, _, mac = token.partition(".")
        try:
            if not expires_text.isdigit() or len(mac) > 128:
                raise ValueError("shape")
            payload = f"{request_id}\n{name}\n{expires_text}".encode()
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                raise ValueError("mac")
        except (ValueError, binascii.Error):
            raise LinkExpired("the download link is not one this gateway issued") from None
        if now.timestamp() > int(expires_text):
            raise LinkExpired("the download link has expired; ask for the result again")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
