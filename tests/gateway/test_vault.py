"""The token vault: AES-256-GCM sealing bound to its row, with a key ring."""

from __future__ import annotations

import pytest

from gateway.vault import KeyRing, VaultError, generate_key_entry, token_row

OLD = generate_key_entry("old")
NEW = generate_key_entry("new")


def test_sealed_token_opens_for_its_own_row() -> None:
    """A token sealed for a row opens for that row and does not contain the plaintext."""
    ring = KeyRing.parse(OLD)
    sealed = ring.seal("canary-token-123", row=token_row("con_1", "access_token"))

    assert "canary-token-123" not in sealed
    assert ring.open(sealed, row=token_row("con_1", "access_token")) == "canary-token-123"


def test_ciphertext_swapped_to_another_connection_does_not_open() -> None:
    """A ciphertext copied into another connection's row fails instead of decrypting."""
    ring = KeyRing.parse(OLD)
    sealed = ring.seal("secret", row=token_row("con_1", "access_token"))

    with pytest.raises(VaultError):
        ring.open(sealed, row=token_row("con_2", "access_token"))


def test_ciphertext_swapped_between_columns_does_not_open() -> None:
    """An access token cannot be passed off as the refresh token of the same row."""
    ring = KeyRing.parse(OLD)
    sealed = ring.seal("secret", row=token_row("con_1", "access_token"))

    with pytest.raises(VaultError):
        ring.open(sealed, row=token_row("con_1", "refresh_token"))


def test_tampered_ciphertext_does_not_open() -> None:
    """Flipping one character of the ciphertext is detected by the GCM tag."""
    ring = KeyRing.parse(OLD)
    sealed = ring.seal("secret", row="r")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]

    with pytest.raises(VaultError):
        ring.open(flipped, row="r")


def test_old_ciphertext_opens_while_the_old_key_is_still_in_the_ring() -> None:
    """During rotation, tokens sealed with the previous key keep working."""
    sealed = KeyRing.parse(OLD).seal("secret", row="r")
    rotating = KeyRing.parse(f"{NEW},{OLD}")

    assert rotating.open(sealed, row="r") == "secret"
    assert rotating.needs_rotation(sealed)
    assert not rotating.needs_rotation(rotating.seal("secret", row="r"))


def test_ciphertext_of_a_removed_key_names_the_missing_key() -> None:
    """Once the old key is gone, its ciphertext fails with the key id in the message."""
    sealed = KeyRing.parse(OLD).seal("secret", row="r")

    with pytest.raises(VaultError, match="'old'"):
        KeyRing.parse(NEW).open(sealed, row="r")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no keys"),
        ("k1", "kid:base64key"),
        ("k1:c2hvcnQ", "32 bytes"),
        ("k1:!!!notbase64", "base64"),
        (f"{OLD},{OLD}", "twice"),
    ],
)
def test_malformed_key_ring_is_refused(spec: str, message: str) -> None:
    """A missing or malformed key is an error, never a silent plaintext fallback."""
    with pytest.raises(ValueError, match=message):
        KeyRing.parse(spec)
