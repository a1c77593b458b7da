"""Normalized End User identifiers.

Suppression lists, consent records and the audit log all match End Users by
identifier, so the same person must always produce the same value:

- email: trimmed and lower-cased (``" Ann@Example.COM "`` -> ``ann@example.com``);
- phone: E.164 (``+`` then 8 to 15 digits, ITU-T E.164 §6.1); a number given
  without a leading ``+`` is read in the default region, the North American
  Numbering Plan (``US``/``CA``: 10 digits, optionally preceded by the trunk
  code 1 or the international prefix 011);
- handle: trimmed, one leading ``@`` removed, lower-cased, and scoped to its
  provider (``@Ann`` on X and ``ann`` on Instagram need not be one person);
- provider user id: trimmed, case kept (OIDC Core §5.7: ``sub`` is
  case-sensitive), scoped to its provider.

Provider-scoped values read ``<provider>:<value>``. A provider name is lower
case letters, digits, ``.``, ``_`` or ``-``, so the first ``:`` always ends it
and two different pairs never produce the same value.

This module is a deliberately small normalizer, not a numbering-plan database:
it does not validate area codes outside North America. Providers mostly hand
us E.164 already; what it must guarantee is that equal numbers compare equal.
"""

from __future__ import annotations

import functools
import re

from policies.vocabulary import Identifier, IdentifierKind

DEFAULT_REGION = "US"

# Regions whose national numbers this normalizer understands, with their
# country calling code and the international prefix dialled from them.
_NANP = ("1", "011")
_REGIONS: dict[str, tuple[str, str]] = {"US": _NANP, "CA": _NANP}

# Enum members read once: ``IdentifierKind.X`` goes through the metaclass's
# ``__getattr__`` hook on every access (about 480 instructions in 3.11), and
# these builders run for each identifier of every page.
_EMAIL = IdentifierKind.EMAIL
_PHONE = IdentifierKind.PHONE
_HANDLE = IdentifierKind.HANDLE
_PROVIDER_USER_ID = IdentifierKind.PROVIDER_USER_ID

_PHONE_PUNCTUATION = re.compile(r"[\s().\-/\u00a0]")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9._-]*")
# ``\s`` in a str pattern is exactly ``str.isspace`` (both Py_UNICODE_ISSPACE; a
# test checks every code point), found in one C-level scan instead of a loop.
_SPACE = re.compile(r"\s")


class InvalidIdentifier(ValueError):
    """The raw value cannot be read as an identifier of the requested kind."""


def normalize_email(raw: str) -> str:
    """Return ``raw`` trimmed and lower-cased; reject anything without one ``@``."""
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain or _SPACE.search(value):
        raise InvalidIdentifier(f"not an email address: {raw!r}")
    return value


def normalize_phone(raw: str, *, default_region: str = DEFAULT_REGION) -> str:
    """Return ``raw`` as an E.164 number (``+15551234567``)."""
    text = raw.strip()
    if text.lower().startswith("tel:"):  # RFC 3966 URI form
        text = text[4:]
    text = _PHONE_PUNCTUATION.sub("", text)
    if text.startswith("+"):
        digits = text[1:]
    else:
        try:
            country_code, international_prefix = _REGIONS[default_region.upper()]
        except KeyError:
            raise InvalidIdentifier(f"unsupported default region: {default_region!r}") from None
        digits = _national_to_international(text, country_code, international_prefix)
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise InvalidIdentifier(f"not a phone number: {raw!r}")
    if digits[0] == "0":  # E.164 country codes never start with 0
        raise InvalidIdentifier(f"not a phone number: {raw!r}")
    return "+" + digits


def _national_to_international(text: str, country_code: str, international_prefix: str) -> str:
    if text.startswith(international_prefix):
        return text[len(international_prefix) :]
    if len(text) == 11 and text.startswith(country_code):
        text = text[len(country_code) :]
    # NANP national numbers are ten digits and the area code never starts with 0 or 1.
    if len(text) != 10 or text[0] in "01":
        raise InvalidIdentifier(f"not a national number: {text!r}")
    return country_code + text


def normalize_handle(raw: str) -> str:
    """Return a handle trimmed, without its leading ``@``, lower-cased."""
    value = raw.strip().removeprefix("@").lower()
    if not value or _SPACE.search(value):
        raise InvalidIdentifier(f"not a handle: {raw!r}")
    return value


def normalize_provider_user_id(raw: str) -> str:
    """Return a provider's user id trimmed; case is significant and kept."""
    value = raw.strip()
    if not value:
        raise InvalidIdentifier("empty provider user id")
    return value


def _scoped(provider: str, value: str) -> str:
    return f"{_provider_name(provider)}:{value}"


# Provider names are the registry's handful of constants; every scoped
# identifier of a page names the same one, so it is checked once per name.
@functools.lru_cache(maxsize=64)
def _provider_name(provider: str) -> str:
    name = provider.strip().lower()
    if _PROVIDER.fullmatch(name) is None:
        raise InvalidIdentifier(f"not a provider name: {provider!r}")
    return name


def email_identifier(raw: str) -> Identifier:
    """An email identifier, normalized."""
    return Identifier(_EMAIL, normalize_email(raw))


def phone_identifier(raw: str, *, default_region: str = DEFAULT_REGION) -> Identifier:
    """A phone identifier in E.164."""
    return Identifier(_PHONE, normalize_phone(raw, default_region=default_region))


def handle_identifier(provider: str, raw: str) -> Identifier:
    """A handle on ``provider`` (``x:ann``)."""
    return Identifier(_HANDLE, _scoped(provider, normalize_handle(raw)))


def provider_user_identifier(provider: str, raw: str) -> Identifier:
    """A provider's stable user id (``facebook:1234``, ``google:1083…``)."""
    return Identifier(_PROVIDER_USER_ID, _scoped(provider, normalize_provider_user_id(raw)))
