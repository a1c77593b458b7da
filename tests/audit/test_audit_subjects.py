"""Keyed, per-customer subject hashes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.audit import Action, EventDraft, Outcome, SubjectHasher

ID = "email:jane@customer.example"


def test_same_subject_same_customer_same_hash(hasher: SubjectHasher) -> None:
    """Hashing is deterministic, so a search filter finds what was logged."""
    assert hasher.hash("acme", ID) == hasher.hash("acme", ID)


def test_customers_get_unrelated_hashes(hasher: SubjectHasher) -> None:
    """The same person at two customers cannot be joined across logs."""
    assert hasher.hash("acme", ID) != hasher.hash("globex", ID)


def test_hash_depends_on_the_secret(hasher: SubjectHasher) -> None:
    """Without the master secret the hash cannot be recomputed from a guess."""
    assert hasher.hash("acme", ID) != SubjectHasher(b"t" * 32).hash("acme", ID)


def test_whitespace_and_unicode_form_are_normalized(hasher: SubjectHasher) -> None:
    """Surrounding whitespace and NFD/NFC differences do not change the hash."""
    assert hasher.hash("acme", "handle:jos\u00e9") == hasher.hash("acme", " handle:jose\u0301\n")


def test_hash_has_a_labelled_hex_form(hasher: SubjectHasher) -> None:
    """Hashes look like ``hmac-sha256:<64 hex>`` and are accepted as event subjects."""
    value = hasher.hash("acme", ID)
    draft = EventDraft(
        customer_id="acme", action=Action.RECORDS_READ, outcome=Outcome.ALLOWED, subjects=(value,)
    )
    assert (12 + 64, (value,)) == (len(value), draft.subjects)
    assert value.startswith("hmac-sha256:")


def test_short_secret_is_refused() -> None:
    """A master secret under 32 bytes is refused at construction."""
    with pytest.raises(ValueError, match="32 bytes"):
        SubjectHasher(b"short")


def test_repr_hides_the_secret() -> None:
    """The secret never shows up in a repr (and so in a log line)."""
    assert "sss" not in repr(SubjectHasher(b"s" * 32))


def test_hash_is_hmac_sha256_under_the_hkdf_customer_key() -> None:
    """The stored form is exactly HMAC-SHA256(HKDF(master, info=customer), identifier):
    logs written before any change to how it is computed still match a search."""
    secret = b"m" * 32
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"linkgate.audit.subjects.v1", info=b"acme"
    ).derive(secret)
    expected = hmac.new(key, ID.encode("utf-8"), hashlib.sha256).hexdigest()
    hasher = SubjectHasher(secret)
    assert [f"hmac-sha256:{expected}"] * 2 == [hasher.hash("acme", ID), hasher.hash("acme", ID)]
