"""Checkpoints as signed notes: text form, key ids, key files, and the pruning rule."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    Checkpoint,
    CheckpointKeys,
    CheckpointSigner,
    KeyFileError,
    generate_key_file,
    prunable_up_to,
)

T0 = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
HEAD = "ab" * 32


def test_checkpoint_note_has_tlog_checkpoint_shape(signer: CheckpointSigner) -> None:
    """Origin, size, base64 head, two extension lines, a blank line, one signature line."""
    checkpoint = signer.sign("acme", 42, HEAD, T0)
    lines = checkpoint.note.split("\n")
    assert [
        "linkgate/audit/acme",
        "42",
        base64.b64encode(bytes.fromhex(HEAD)).decode(),
        "time 2026-05-06T07:08:09.123456Z",
        "previous " + base64.b64encode(bytes(32)).decode(),
        "",
    ] == lines[:6]
    assert lines[6].startswith("\u2014 test.linkgate/audit ")
    assert checkpoint == Checkpoint.parse(checkpoint.note)


def test_key_id_follows_signed_note(signer: CheckpointSigner) -> None:
    """Key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], and leads the signature."""
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_hash = hashlib.sha256(b"test.linkgate/audit\n\x01" + raw).digest()[:4]
    checkpoint = signer.sign("acme", 1, HEAD, T0)
    sig = base64.b64decode(checkpoint.note.rsplit(" ", 1)[1])
    assert (f"test.linkgate/audit+{key_hash.hex()}", key_hash) == (checkpoint.key_id, sig[:4])


def test_verifier_key_round_trips(signer: CheckpointSigner) -> None:
    """The published verifier key text verifies the signer's checkpoints."""
    keys = CheckpointKeys.parse([signer.verifier_key])
    assert keys.problem(signer.sign("acme", 3, HEAD, T0)) == ""


def test_altered_note_text_fails(signer: CheckpointSigner, keys: CheckpointKeys) -> None:
    """Changing the signed text (here the size) invalidates the signature."""
    note = signer.sign("acme", 3, HEAD, T0).note.replace("\n3\n", "\n4\n", 1)
    assert "does not verify" in keys.problem(Checkpoint.parse(note))


@pytest.mark.parametrize(
    "note",
    [
        "linkgate/audit/acme\n3\n",
        "other/log\n3\nAAAA\ntime x\nprevious y\n\n\u2014 k AAAAAAAA\n",
        "linkgate/audit/acme\n03\nAAAA\ntime x\nprevious y\n\n\u2014 k AAAAAAAA\n",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    """Notes that are not Linkgate checkpoints do not parse."""
    with pytest.raises(ValueError, match=r"checkpoint|note"):
        Checkpoint.parse(note)


def test_customer_id_cannot_break_framing(signer: CheckpointSigner) -> None:
    """A newline in the origin would frame another checkpoint, so it is refused."""
    with pytest.raises(ValueError, match="origin"):
        signer.sign("acme\n999", 1, HEAD, T0)


def test_generated_key_file_is_private_and_loads(tmp_path: Path) -> None:
    """generate_key_file writes a 0600 PEM that loads and signs; it never overwrites."""
    path = tmp_path / "audit-signing.pem"
    generate_key_file(path)
    signer = CheckpointSigner.from_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert CheckpointKeys.parse([signer.verifier_key]).problem(signer.sign("a", 1, HEAD, T0)) == ""
    with pytest.raises(FileExistsError):
        generate_key_file(path)


def test_raw_base64_seed_key_file_loads(tmp_path: Path) -> None:
    """A file holding the base64 32-byte seed gives the same key as its PEM."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path = tmp_path / "seed"
    path.write_text(base64.b64encode(seed).decode() + "\n")
    assert CheckpointSigner(key).key_id == CheckpointSigner.from_key_file(path).key_id


@pytest.mark.parametrize("content", [b"not a key", b""])
def test_garbage_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """A key file that is not an Ed25519 key raises KeyFileError."""
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        CheckpointSigner.from_key_file(path)


def test_non_ed25519_pem_is_refused(tmp_path: Path) -> None:
    """An EC key in PEM is not accepted as a checkpoint key."""
    path = tmp_path / "ec.pem"
    path.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError):
        CheckpointSigner.from_key_file(path)


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    """A missing key file raises KeyFileError naming the path."""
    with pytest.raises(KeyFileError, match="nope"):
        CheckpointSigner.from_key_file(tmp_path / "nope")


def test_prunable_up_to_picks_newest_checkpoint_before_cutoff(signer: CheckpointSigner) -> None:
    """Only a checkpoint signed before the cutoff is a pruning boundary; the newest such wins."""
    checkpoints = [
        signer.sign("acme", seq, HEAD, T0 + timedelta(days=day))
        for seq, day in ((10, 0), (20, 10), (30, 20))
    ]
    assert prunable_up_to(checkpoints, T0 + timedelta(days=15)) == 20
    assert prunable_up_to(checkpoints, T0) is None
    assert prunable_up_to([], T0) is None


def test_key_id_must_match_public_key(signer: CheckpointSigner) -> None:
    """A key registered under another key's id is refused."""
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ValueError, match="does not match"):
        CheckpointKeys({signer.key_id: other})
