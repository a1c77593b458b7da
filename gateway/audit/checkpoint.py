"""Signed checkpoints: a customer's chain head, signed with a key kept outside the database.

What this follows:

* **C2SP signed-note** (c2sp.org/signed-note): the text form. A note is text
  ending in a newline, a blank line, then signature lines ``— <key name>
  base64(key ID || signature)``; Ed25519 signatures (RFC 8032) over the note
  text; key ID = ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``; a
  verifier ignores unknown keys, rejects the note if a known key's signature
  fails, and requires at least one known key to verify. Verifier keys are
  written ``<name>+<key ID hex>+base64(0x01 || public key)`` as in Go's
  ``golang.org/x/mod/sumdb/note``, so an operator can publish them as text.
* **C2SP tlog-checkpoint** (c2sp.org/tlog-checkpoint): the note text is the
  origin line (``linkgate/audit/<customer_id>``), the size (here the head
  ``seq``) and the base64 head hash, followed by two extension lines, which
  that spec permits: ``time <RFC 3339>`` and ``previous <base64 hash>``.
  Departure: the "root hash" is the head of a hash chain, not an RFC 6962
  Merkle root, so there are no inclusion or consistency proofs; verifying
  means replaying the chain (:mod:`gateway.audit.chain`).
* **AWS CloudTrail digest files** ("CloudTrail digest file structure"): each
  digest carries the hash of the previous digest (``previousDigestHashValue``)
  so the digests form a chain of their own; here ``previous`` is the
  SHA-256 of the previous checkpoint's whole signed note (text and signature),
  and the first checkpoint names :attr:`Checkpoint.GENESIS`.

Retention: pruning may remove events only up to a checkpoint's seq
(:func:`prunable_up_to`); that checkpoint's seq and hash then anchor the rest
of the chain, and checkpoints themselves are never pruned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.errors import KeyFileError
from gateway.audit.event import format_time, parse_time

__all__ = [
    "DEFAULT_KEY_NAME",
    "ORIGIN_PREFIX",
    "Checkpoint",
    "CheckpointKeys",
    "CheckpointSigner",
    "generate_key_file",
    "prunable_up_to",
]

ORIGIN_PREFIX = "linkgate/audit/"
DEFAULT_KEY_NAME = "linkgate-audit"
CHECKPOINT_HASH_PREFIX = b"linkgate.audit.checkpoint.v1\n"

_ED25519 = b"\x01"  # signed-note signature type for Ed25519
_SIG_DASH = "\u2014 "
_KEY_NAME = re.compile(r"^[^\s+]+$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,18})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519 + raw).digest()[:4]


def _check_key_name(name: str) -> None:
    # signed-note: key names are non-empty with no Unicode spaces or '+'.
    if not _KEY_NAME.match(name):
        raise ValueError(f"invalid key name {name!r}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint, parsed from (and carrying) its signed note."""

    GENESIS: ClassVar[str] = "0" * 64

    customer_id: str
    seq: int
    head_hash: str
    signed_at: datetime
    prev_checkpoint_hash: str
    key_id: str
    note: str

    @property
    def hash(self) -> str:
        """What the next checkpoint names as ``previous`` (covers the signature too)."""
        return hashlib.sha256(CHECKPOINT_HASH_PREFIX + self.note.encode("utf-8")).hexdigest()

    @property
    def text(self) -> str:
        """The signed part of the note."""
        return self.note[: self.note.index("\n\n") + 1]

    @classmethod
    def parse(cls, note: str) -> Checkpoint:
        """Read a checkpoint note. This does not verify it: see :class:`CheckpointKeys`."""
        if "\n\n" not in note or not note.endswith("\n"):
            raise ValueError("not a signed note")
        text, _, signatures = note.partition("\n\n")
        lines = text.split("\n")
        if len(lines) != 5:
            raise ValueError("checkpoint text must have five lines")
        origin, size, root, time_line, prev_line = lines
        if not origin.startswith(ORIGIN_PREFIX) or len(origin) == len(ORIGIN_PREFIX):
            raise ValueError("checkpoint origin is not a Linkgate audit log")
        if not _DECIMAL.match(size):
            raise ValueError("checkpoint size is not a decimal number")
        if not time_line.startswith("time ") or not prev_line.startswith("previous "):
            raise ValueError("checkpoint extension lines are missing")
        try:
            head = _unb64(root)
            prev = _unb64(prev_line.removeprefix("previous "))
            signed_at = parse_time(time_line.removeprefix("time "))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"checkpoint field is malformed: {exc}") from exc
        if len(head) != 32 or len(prev) != 32:
            raise ValueError("checkpoint hashes must be 32 bytes")
        key_id = ""
        for line in signatures.splitlines():
            name, sig = _split_signature(line)
            key_id = key_id or f"{name}+{sig[:4].hex()}"
        if not key_id:
            raise ValueError("checkpoint has no signature")
        return cls(
            customer_id=origin.removeprefix(ORIGIN_PREFIX),
            seq=int(size),
            head_hash=head.hex(),
            signed_at=signed_at,
            prev_checkpoint_hash=prev.hex(),
            key_id=key_id,
            note=note,
        )


def _split_signature(line: str) -> tuple[str, bytes]:
    if not line.startswith(_SIG_DASH):
        raise ValueError("malformed signature line")
    name, _, encoded = line.removeprefix(_SIG_DASH).partition(" ")
    try:
        sig = _unb64(encoded)
    except binascii.Error as exc:
        raise ValueError("malformed signature") from exc
    if not name or len(sig) < 5:
        raise ValueError("malformed signature line")
    return name, sig


def _body(
    customer_id: str, seq: int, head_hash: str, signed_at: datetime, prev_checkpoint_hash: str
) -> str:
    if not customer_id or _CONTROL.search(customer_id):
        # A newline in the origin would frame a different checkpoint.
        raise ValueError("customer_id cannot appear in a checkpoint origin")
    if seq < 0:
        raise ValueError("seq must not be negative")
    return (
        f"{ORIGIN_PREFIX}{customer_id}\n{seq}\n{_b64(bytes.fromhex(head_hash))}\n"
        f"time {format_time(signed_at)}\nprevious {_b64(bytes.fromhex(prev_checkpoint_hash))}\n"
    )


class CheckpointSigner:
    """A named Ed25519 key that signs checkpoints. Load it from a file, not the database."""

    def __init__(self, private_key: Ed25519PrivateKey, *, name: str = DEFAULT_KEY_NAME) -> None:
        _check_key_name(name)
        self.name = name
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self._key_hash = _key_hash(name, self.public_key)

    @property
    def key_id(self) -> str:
        """``<name>+<key ID hex>``: what a checkpoint records as its key."""
        return f"{self.name}+{self._key_hash.hex()}"

    @property
    def verifier_key(self) -> str:
        """The public key as text, to configure verifiers with."""
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"{self.key_id}+{_b64(_ED25519 + raw)}"

    @classmethod
    def from_key_file(
        cls, path: str | os.PathLike[str], *, name: str = DEFAULT_KEY_NAME
    ) -> CheckpointSigner:
        """Load a PKCS#8 PEM Ed25519 key, or a file holding the base64 32-byte seed."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read checkpoint key file {path}: {exc.strerror}") from exc
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                key = serialization.load_pem_private_key(data, password=None)
            else:
                key = Ed25519PrivateKey.from_private_bytes(
                    base64.b64decode(data.strip(), validate=True)
                )
        except (ValueError, TypeError, binascii.Error) as exc:
            raise KeyFileError(f"checkpoint key file {path} is not an Ed25519 key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"checkpoint key file {path} is not an Ed25519 key")
        return cls(key, name=name)

    def sign(
        self,
        customer_id: str,
        seq: int,
        head_hash: str,
        signed_at: datetime,
        prev_checkpoint_hash: str = Checkpoint.GENESIS,
    ) -> Checkpoint:
        """Sign the head ``(seq, head_hash)`` of ``customer_id``'s chain."""
        text = _body(customer_id, seq, head_hash, signed_at, prev_checkpoint_hash)
        signature = self._private_key.sign(text.encode("utf-8"))
        note = f"{text}\n{_SIG_DASH}{self.name} {_b64(self._key_hash + signature)}\n"
        return Checkpoint.parse(note)


class CheckpointKeys:
    """The public keys checkpoints may be signed with, by key id."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key_id, public_key in (keys or {}).items():
            name, _, hash_hex = key_id.rpartition("+")
            _check_key_name(name)
            if _key_hash(name, public_key).hex() != hash_hex:
                raise ValueError(f"key id {key_id!r} does not match its public key")
            self._keys[key_id] = public_key

    @classmethod
    def parse(cls, verifier_keys: Iterable[str]) -> CheckpointKeys:
        """From ``<name>+<key ID hex>+base64(0x01 || public key)`` strings."""
        keys: dict[str, Ed25519PublicKey] = {}
        for text in verifier_keys:
            parts = text.strip().split("+", 2)
            if len(parts) != 3:
                raise ValueError("a verifier key is name+hash+key")
            name, hash_hex, encoded = parts
            try:
                raw = _unb64(encoded)
            except binascii.Error as exc:
                raise ValueError("verifier key is not base64") from exc
            if len(raw) != 33 or raw[:1] != _ED25519:
                raise ValueError("verifier key is not an Ed25519 key")
            keys[f"{name}+{hash_hex}"] = Ed25519PublicKey.from_public_bytes(raw[1:])
        return cls(keys)

    def __or__(self, other: CheckpointKeys) -> CheckpointKeys:
        return CheckpointKeys({**self._keys, **other._keys})

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def problem(self, checkpoint: Checkpoint) -> str:
        """Why ``checkpoint`` does not verify, or ``""`` when it does (signed-note rules)."""
        try:
            text, _, signatures = checkpoint.note.partition("\n\n")
            parsed = [_split_signature(line) for line in signatures.splitlines()]
        except ValueError as exc:
            return str(exc)
        verified = False
        for name, sig in parsed:
            public_key = self._keys.get(f"{name}+{sig[:4].hex()}")
            if public_key is None:
                continue  # signed-note: ignore signatures from unknown keys
            try:
                public_key.verify(sig[4:], (text + "\n").encode("utf-8"))
            except InvalidSignature:
                return f"signature by {name} does not verify"
            verified = True
        if not verified:
            return "not signed by any known key"
        return ""


def generate_key_file(path: str | os.PathLike[str]) -> None:
    """Write a new Ed25519 key as PKCS#8 PEM, readable by its owner only (mode 0600).

    Refuses to overwrite an existing file: losing a signing key is recoverable,
    silently replacing one is not.
    """
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


def prunable_up_to(checkpoints: Iterable[Checkpoint], before: datetime) -> int | None:
    """The highest seq whose events may all be deleted for retention, or ``None``.

    Only a checkpoint boundary qualifies, so the remaining chain still anchors
    on a signed head; a checkpoint signed before ``before`` covers only events
    that occurred before it was signed, hence before ``before``.
    """
    eligible = [c.seq for c in checkpoints if c.signed_at < before and c.seq > 0]
    return max(eligible, default=None)
