"""A page's identifier hashes, worked out only when asked for, and the fail-closed answers."""

from __future__ import annotations

from gateway.audit import SubjectHasher
from gateway.subject_controls import PageControls, PageHashes
from policies import Identifier, IdentifierKind

ANN = Identifier(IdentifierKind.EMAIL, "ann@example.com")
BOB = Identifier(IdentifierKind.EMAIL, "bob@example.com")
EVE = Identifier(IdentifierKind.EMAIL, "eve@example.com")


class CountingHasher(SubjectHasher):
    def __init__(self) -> None:
        super().__init__(b"s" * 32)
        self.hashed: list[str] = []

    def hash(self, customer_id: str, identifier: str) -> str:
        self.hashed.append(identifier)
        return super().hash(customer_id, identifier)


def test_a_hash_is_the_customers_keyed_hash_worked_out_once_when_asked() -> None:
    """Only asked-for identifiers are hashed, each once, to what the hasher gives."""
    hasher = CountingHasher()
    hashes = PageHashes(hasher, "acme", [ANN, BOB])

    first, again = hashes.get(ANN), hashes[ANN]

    assert (first, again) == (SubjectHasher(b"s" * 32).hash("acme", str(ANN)),) * 2
    assert [str(ANN)] == hasher.hashed


def test_an_identifier_off_the_page_has_no_hash() -> None:
    """The mapping holds the page's identifiers only, and hashes none to say so."""
    hasher = CountingHasher()
    hashes = PageHashes(hasher, "acme", [ANN, ANN, BOB])

    assert (None, False, 2, {ANN, BOB}) == (
        hashes.get(EVE),
        EVE in hashes,
        len(hashes),
        set(hashes),
    )
    assert hasher.hashed == []


def test_without_consents_or_suppressions_no_identifier_is_hashed() -> None:
    """With nothing to look up, nobody consented, only those off the page count as suppressed."""
    hasher = CountingHasher()
    controls = PageControls("marketing", PageHashes(hasher, "acme", [ANN]), frozenset(), {})

    answers = (controls.consented(ANN), controls.suppressed(ANN, "marketing"))

    assert (answers, controls.suppressed(EVE, "marketing")) == ((False, False), True)
    assert hasher.hashed == []
