"""Signing webhook bodies, and checking a signature as a receiver should.

The scheme is Stripe's (https://docs.stripe.com/webhooks#verify-manually):
the header ``Linkgate-Signature: t=<unix seconds>,v1=<hex>`` carries the
timestamp and HMAC-SHA256 over ``"<t>." + body`` with the shared secret. The
timestamp is inside the MAC, so a receiver that rejects timestamps outside a
tolerance (Stripe's default: five minutes) rejects replays of old deliveries;
the ``Linkgate-Event-Id`` header lets it drop duplicates within that window.
A fresh timestamp and signature are made for every attempt, as Stripe does.

Several ``v1`` entries may appear (secret rotation); a receiver accepts the
body when any of them matches. Sans-I/O: plain functions over bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "SignatureError",
    "sign",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "Linkgate-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds; Stripe's default tolerance


class SignatureError(Exception):
    """The signature header is missing, malformed, stale, or does not match the body."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over ``"<timestamp>." + body``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Linkgate-Signature`` value for one delivery attempt."""
    return f"t={timestamp},{SCHEME}={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check ``header`` against ``body``; return the signed timestamp or raise ``SignatureError``.

    What a receiver runs on the raw request body, before parsing it. The
    timestamp may differ from ``now`` by at most ``tolerance`` seconds either
    way (a clock running ahead is as suspect as a replay).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the signature header has no valid timestamp") from None
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise SignatureError("the signature header has no timestamp")
    if not candidates:
        raise SignatureError(f"the signature header has no {SCHEME} signature")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("the signature timestamp is outside the tolerance")
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no signature matches the body")
    return timestamp
