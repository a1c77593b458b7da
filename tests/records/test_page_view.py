"""The records service's per-request view of consents and suppressions (fail closed)."""

from __future__ import annotations

from gateway.audit import SubjectHasher
from gateway.records.service import _PageView
from gateway.subject_controls import PageControls
from policies import Identifier, IdentifierKind

ANN = Identifier(IdentifierKind.EMAIL, "ann@example.com")


def test_before_the_controls_load_nobody_consented_and_everybody_is_suppressed() -> None:
    """Until the page's controls are loaded the view fails closed."""
    view = _PageView("acme", SubjectHasher(b"s" * 32))

    assert (view.consented(ANN), view.suppressed(ANN, "marketing")) == (False, True)


def test_once_loaded_the_view_answers_from_the_page_controls() -> None:
    """Consent, suppression and pseudonyms come from the loaded controls and their hashes."""
    view = _PageView("acme", SubjectHasher(b"s" * 32))
    view.controls = PageControls(
        purpose="marketing",
        hashes={ANN: "hmac-sha256:ann"},
        consented_hashes=frozenset({"hmac-sha256:ann"}),
        suppressed_scopes={},
    )

    assert (
        view.consented(ANN),
        view.suppressed(ANN, "marketing"),
        view.pseudonymize(ANN),
    ) == (True, False, "hmac-sha256:ann")


def test_a_pseudonym_outside_the_page_hashes_is_computed() -> None:
    """An identifier the page's hashes lack is hashed under the customer's key."""
    hasher = SubjectHasher(b"s" * 32)
    view = _PageView("acme", hasher)

    assert hasher.hash("acme", str(ANN)) == view.pseudonymize(ANN)
