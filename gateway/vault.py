"""The token vault: AES-256-GCM with a key ring, ciphertext bound to its row.

Each token is sealed as ``v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>``.
The associated data names the connection and the field, so a ciphertext copied
into another row (or another column) fails to open instead of handing one
customer's token to another connection (NIST SP 800-38D §5.2.1.1 AAD).

The first key of the ring is current: new tokens are sealed with it. Older
keys only open. ``linkgate keys rotate`` re-seals every token under the
current key; until it finishes, old ciphertext still opens because its key is
still in the ring.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit nonce, SP 800-38D §8.2.2 (random construction)
FORMAT_VERSION = "v1"
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class VaultError(Exception):
    """A ciphertext that does not open: wrong row, unknown key, or tampered."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key_entry(kid: str) -> str:
    """A fresh ``kid:key`` entry for ``LINKGATE_VAULT_KEYS``."""
    return f"{kid}:{_b64e(os.urandom(KEY_BYTES))}"


@dataclass(frozen=True, slots=True)
class KeyRing:
    current_kid: str
    keys: Mapping[str, AESGCM] = field(repr=False)

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``kid:key,kid:key``; the first entry is current. Raises ``ValueError``."""
        keys: dict[str, AESGCM] = {}
        order: list[str] = []
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep or not _KID.fullmatch(kid):
                raise ValueError("each entry must be kid:base64key with a short [A-Za-z0-9_-] kid")
            try:
                raw = _b64d(encoded)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {kid!r} is not base64") from None
            if len(raw) != KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes, got {len(raw)}")
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice")
            keys[kid] = AESGCM(raw)
            order.append(kid)
        if not order:
            raise ValueError("no keys given")
        return cls(current_kid=order[0], keys=keys)

    def seal(self, plaintext: str, *, row: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.current_kid].encrypt(nonce, plaintext.encode(), row.encode())
        return f"{FORMAT_VERSION}.{self.current_kid}.{_b64e(nonce + sealed)}"

    def open(self, ciphertext: str, *, row: str) -> str:
        version, kid, payload = _split(ciphertext)
        if version != FORMAT_VERSION:
            raise VaultError("unknown ciphertext format")
        key = self.keys.get(kid)
        if key is None:
            raise VaultError(f"ciphertext sealed with key {kid!r}, which is not in the ring")
        blob = _b64d(payload)
        try:
            return key.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], row.encode()).decode()
        except InvalidTag:
            raise VaultError("ciphertext does not belong to this row or was altered") from None

    def needs_rotation(self, ciphertext: str) -> bool:
        return _split(ciphertext)[1] != self.current_kid

    def kid_of(self, ciphertext: str) -> str:
        return _split(ciphertext)[1]


def token_row(connection_id: str, name: str) -> str:
    """The associated data of one token column of one connection."""
    return f"linkgate/connection/{connection_id}/{name}"


def _split(ciphertext: str) -> tuple[str, str, str]:
    parts = ciphertext.split(".")
    if len(parts) != 3:
        raise VaultError("malformed ciphertext")
    return parts[0], parts[1], parts[2]
