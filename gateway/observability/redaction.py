"""What counts as a secret, and how it is masked.

One module owns the definitions so that logs (`logs.py`) and spans
(`tracing.py`) mask exactly the same things. Redaction here is the last line
of defence: code should not log or trace secrets in the first place, and these
rules catch what slips through.

Two complementary rules:

* by name: a value stored under a key that names a secret (``access_token``,
  ``Authorization``, ``client_secret`` …) is replaced whole, whatever its type;
* by shape: inside any string, anything that looks like a credential (a JWT,
  ``Bearer …``, a Linkgate key, ``code=…`` in a query string …) is replaced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Mapping
from typing import NamedTuple, TypeVar

__all__ = [
    "CLEAN_TEXT_MAX_LENGTH",
    "MASK",
    "SECRET_KEYS",
    "SECRET_KEY_SUFFIXES",
    "SECRET_PATTERNS",
    "KnownClean",
    "SecretPattern",
    "is_secret_key",
    "redact_text",
    "redact_value",
]

MASK = "[REDACTED]"

# Compared after lower-casing and turning "-" into "_", so header names
# ("Authorization", "Set-Cookie", "X-Api-Key") match too.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "api_key",
        "assertion",
        "auditor_key",
        "authorization",
        "client_assertion",
        "client_secret",
        "code",
        "code_verifier",
        "cookie",
        "credentials",
        "id_token",
        "key",
        "nonce",
        "passphrase",
        "password",
        "private_key",
        "proxy_authorization",
        "refresh_token",
        "secret",
        "service_key",
        "session",
        "set_cookie",
        "state",
        "token",
        "tokens",
        "vault_keys",
    }
)

# Any key ending in one of these is a secret as well (``connect_token``,
# ``signing_key``, ``db_password``); "code" is deliberately absent so that
# ``status_code`` stays readable.
SECRET_KEY_SUFFIXES: tuple[str, ...] = ("_token", "_secret", "_password", "_key", "_cookie")

_B64URL = r"[A-Za-z0-9_\-]"
# Query-string and form parameters, and JSON members inside text (an upstream
# error body quoted in an exception message), whose value is a credential.
_PARAMETER_NAMES = "|".join(
    sorted(
        (
            "access_token",
            "client_assertion",
            "client_secret",
            "code",
            "code_verifier",
            "id_token",
            "key",
            "password",
            "refresh_token",
            "state",
            "token",
        ),
        key=len,
        reverse=True,
    )
)


class SecretPattern(NamedTuple):
    """A credential shape to mask inside text.

    *regex*'s group 1, when it has one and it matched, is kept and the rest of
    the match is masked, so the masked text still says what was there. The
    regex runs only on text containing one of the lower-case *hints*: Python's
    regex engine scans slowly without a literal prefix, and most logged
    strings contain none of them.
    """

    regex: re.Pattern[str]
    hints: tuple[str, ...]


SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    # An HTTP Authorization header written out, whatever the scheme.
    SecretPattern(
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
            r"(?:[A-Za-z][\w\-]*\s+)?[^\s\"',;]+"
        ),
        ("authorization",),
    ),
    # RFC 6750 §2.1 bearer credentials and RFC 7617 basic credentials.
    SecretPattern(
        re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9\-._~+/]+=*"), ("bearer", "basic")
    ),
    # JWS/JWE compact serialisation (RFC 7515 §7.1, RFC 7516 §7.1): a JOSE
    # header is a JSON object, so it base64url-encodes to "ey…"; other long
    # three-part blobs are caught too, while dotted names such as module paths
    # are not.
    SecretPattern(
        re.compile(
            rf"\bey{_B64URL}{{8,}}\.{_B64URL}{{8,}}\.{_B64URL}*(?:\.{_B64URL}*){{0,2}}"
            rf"|\b{_B64URL}{{20,}}\.{_B64URL}{{20,}}\.{_B64URL}{{10,}}"
        ),
        (".",),
    ),
    # Linkgate service keys (lgk_), auditor keys (lga_) and connect-session tokens (lgcs_).
    SecretPattern(
        re.compile(rf"(?<![A-Za-z0-9])lg(?:k|a|cs)_{_B64URL}+"), ("lgk_", "lga_", "lgcs_")
    ),
    # Well-known provider token shapes: Google access tokens and Meta tokens.
    SecretPattern(re.compile(r"\bya29\.[A-Za-z0-9_\-.]+|\bEAA[A-Za-z0-9]{20,}"), ("ya29.", "eaa")),
    # name=value in a query string or form body. The hints are the names'
    # endings, so that the common query without a credential ("limit=25") is
    # not scanned; each avoids "i" and "s", which the case-insensitive regex
    # also matches as U+0131 (dotless i) and U+017F (long s), letters that
    # str.lower() keeps as they are.
    SecretPattern(
        re.compile(rf"(?i)((?<![A-Za-z0-9_])(?:{_PARAMETER_NAMES})=)[^&\s#\"'<>(),;]+"),
        ("token=", "on=", "cret=", "code=", "er=", "key=", "word=", "ate="),
    ),
    # "name": "value" in JSON quoted inside text.
    SecretPattern(re.compile(rf"(?i)(\"(?:{_PARAMETER_NAMES})\"\s*:\s*\")[^\"]*"), ('"',)),
)


# Keys repeat (log fields, span attribute names), so the answer is cached; the
# bound only guards against a caller inventing keys.
@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    """Whether a value stored under *key* is a secret."""
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(SECRET_KEY_SUFFIXES)


def _mask(match: re.Match[str]) -> str:
    kept = match.group(1) if match.re.groups else None
    return MASK if kept is None else kept + MASK


H = TypeVar("H", bound=Hashable)

# Values longer than this are not remembered as clean: a long one rarely repeats.
CLEAN_TEXT_MAX_LENGTH = 256


class KnownClean(set[H]):
    """Values already checked and found to hold nothing to mask.

    Span names, route templates, hosts, upstream URLs, log event names and most
    span attributes repeat on every request; checking each once instead of every
    time saves the rules. Only values found clean are ever added, so a secret
    never sits here. At most ``max_items`` are kept and the set is emptied when
    full: values that never repeat (trace ids) cost a refill, not memory. A
    ``set`` itself, so ``in`` and ``issuperset`` stay single C calls on the hot
    path; set operations are atomic under the GIL, and the span export thread
    uses these too.
    """

    def __init__(self, max_items: int = 1024) -> None:
        super().__init__()
        self.max_items = max_items

    def remember(self, value: H) -> None:
        """Add *value*, which the caller has just found clean."""
        if len(self) >= self.max_items:
            self.clear()
        self.add(value)


_CLEAN_TEXT: KnownClean[str] = KnownClean()


# Lower-case hexadecimal digits, which no rule above can match: each needs a
# character outside them (a letter past "f", an upper-case "EAA", "_", ".",
# "=", a quote or whitespace). A test holds every rule to that; a rule that
# could match bare hex (some providers' secrets are hex) must drop this shortcut.
_HEX_DIGITS = "0123456789abcdef"


def redact_text(text: str) -> str:
    """Mask everything in *text* that looks like a credential."""
    if text in _CLEAN_TEXT:
        return text
    if not text.strip(_HEX_DIGITS):
        # Trace and request ids, new on every request: as the rules would find
        # them, without the scan, and not filling the set of clean strings.
        return text
    return _scanned(text)


def _scanned(text: str) -> str:
    """*text* with every rule applied (remembered when nothing was masked)."""
    lowered = text.lower()
    redacted = text
    for regex, hints in SECRET_PATTERNS:
        for hint in hints:
            if hint in lowered:
                redacted = regex.sub(_mask, redacted)
                break
    if redacted == text and len(text) <= CLEAN_TEXT_MAX_LENGTH:
        _CLEAN_TEXT.remember(text)
    return redacted


# Tuples, not ``bool | int | ...``: that expression builds a new union object on
# every call, and redact_value() runs for every field of every log line.
_NUMBERS = (bool, int, float)
_COLLECTIONS = (list, tuple, set, frozenset)


def redact_value(value: object) -> object:
    """Return *value* with secrets masked, walking mappings and sequences.

    Strings are scanned, values under secret keys are replaced whole, numbers,
    booleans and ``None`` pass unchanged, and anything else is turned into its
    ``str`` first, because a renderer would otherwise stringify it after
    redaction had run.
    """
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, _NUMBERS):
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and is_secret_key(key) else redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, _COLLECTIONS):
        return [redact_value(item) for item in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    return redact_text(str(value))
