"""Identifier normalization: one End User, one value, whatever the provider sent.

Suppression and consent are matched by identifier ("Erasure: You can request
that we erase some or all of your personal data"), so equal identifiers must
compare equal.
"""

from __future__ import annotations

import sys

import pytest

from policies import (
    Identifier,
    IdentifierKind,
    InvalidIdentifier,
    email_identifier,
    handle_identifier,
    identifiers,
    normalize_email,
    normalize_phone,
    phone_identifier,
    provider_user_identifier,
)


def test_email_is_trimmed_and_lower_cased() -> None:
    """An email address is trimmed and lower-cased."""
    assert Identifier(IdentifierKind.EMAIL, "ann@example.com") == email_identifier(
        "  Ann@Example.COM "
    )


@pytest.mark.parametrize("raw", ["", "ann", "@example.com", "ann@", "a@b@c", "an n@example.com"])
def test_malformed_email_is_refused(raw: str) -> None:
    """Something that is not an address is refused rather than guessed."""
    with pytest.raises(InvalidIdentifier):
        normalize_email(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "+1 212 555 0100",
        "(212) 555-0100",
        "212.555.0100",
        "1-212-555-0100",
        "011 1 212 555 0100",
        "tel:+1-212-555-0100",
    ],
)
def test_us_numbers_become_e164(raw: str) -> None:
    """US national, trunk-prefixed, international-prefixed and tel: forms give one E.164 value."""
    assert normalize_phone(raw) == "+12125550100"


def test_international_number_keeps_its_country_code() -> None:
    """A number with a leading + is read as international whatever the default region."""
    assert normalize_phone("+44 20 7946 0000") == "+442079460000"


@pytest.mark.parametrize("raw", ["", "555-0100", "(012) 555-0100", "+0 123 4567 89", "+1 abc"])
def test_unreadable_phone_is_refused(raw: str) -> None:
    """Too short, a bad area code, a 0 country code or letters are refused."""
    with pytest.raises(InvalidIdentifier):
        normalize_phone(raw)


def test_unsupported_default_region_is_refused() -> None:
    """A national number in a region the normalizer does not know is refused, not guessed."""
    with pytest.raises(InvalidIdentifier):
        normalize_phone("020 7946 0000", default_region="GB")


def test_phone_identifier_is_e164() -> None:
    """The phone constructor returns a phone identifier in E.164."""
    assert Identifier(IdentifierKind.PHONE, "+12125550100") == phone_identifier("212-555-0100")


def test_handle_is_scoped_and_lower_cased() -> None:
    """A handle loses its @ and case, and is scoped to its provider."""
    assert Identifier(IdentifierKind.HANDLE, "x:ann_b") == handle_identifier("X", " @Ann_B ")
    assert handle_identifier("x", "ann") != handle_identifier("instagram", "ann")


def test_provider_user_id_keeps_case() -> None:
    """A provider user id keeps its case (OIDC Core §5.7: sub is case-sensitive)."""
    assert provider_user_identifier("google", " AbC ").value == "google:AbC"


def test_provider_name_cannot_contain_the_separator() -> None:
    """A provider name with ':' is refused, so scoped values never collide."""
    with pytest.raises(InvalidIdentifier):
        provider_user_identifier("a:b", "c")


def test_whitespace_check_is_str_isspace_for_every_code_point() -> None:
    """Emails and handles refuse exactly the characters ``str.isspace`` calls whitespace."""
    differ = [
        hex(point)
        for point in range(sys.maxunicode + 1)
        if bool(identifiers._SPACE.search(chr(point))) != chr(point).isspace()
    ]
    assert differ == []
