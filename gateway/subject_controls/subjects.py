"""An End User as a caller names them, and as the stores keep them: keyed hashes.

The API takes a subject as lists of identifiers of each kind::

    {"emails": ["Jane@Customer.Example"],
     "phones": ["+1 415 555 0100"],
     "provider_user_ids": [{"provider": "sandbox", "id": "usr_jane"}],
     "handles": [{"provider": "sandbox", "handle": "@JaneDoe"}]}

Each is normalized by ``policies.identifiers`` exactly as the providers'
normalizers do (so the same person hashes the same way on both sides), then
hashed with ``SubjectHasher.hash(customer_id, str(identifier))``: the same
per-customer keyed hash the audit log uses, so an auditor's subject search
finds consent and suppression events too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.audit import SubjectHasher
from gateway.errors import InvalidParameter
from policies import (
    Identifier,
    IdentifierKind,
    InvalidIdentifier,
    email_identifier,
    handle_identifier,
    phone_identifier,
    provider_user_identifier,
)

__all__ = [
    "MAX_IDENTIFIERS",
    "MAX_NOTE",
    "check_note",
    "hash_identifiers",
    "parse_subject",
    "subject_counts",
]

MAX_IDENTIFIERS = 50  # per subject, all kinds together
MAX_NOTE = 1000  # characters of an evidence note or a suppression reason
_MIN_MENTION = 4  # shorter ids and handles are too likely to occur by chance in a note

_KINDS = ("emails", "phones", "provider_user_ids", "handles")


def parse_subject(value: object, *, name: str = "subject") -> tuple[Identifier, ...]:
    """The normalized, de-duplicated identifiers of one subject; 400 when malformed.

    Error details name the offending position, never the value: identifiers
    are personal data and errors end up in logs.
    """
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"{name} must be an object", parameter=name)
    unknown = sorted(set(value) - set(_KINDS))
    if unknown:
        raise InvalidParameter(
            f"{name} has no member {unknown[0]!r} (use {', '.join(_KINDS)})", parameter=name
        )
    found: dict[Identifier, None] = {}
    for kind in _KINDS:
        items = value.get(kind, [])
        where = f"{name}.{kind}"
        if not isinstance(items, list):
            raise InvalidParameter(f"{where} must be a list", parameter=where)
        for index, item in enumerate(items):
            found[_identifier(kind, item, f"{where}[{index}]")] = None
    if not found:
        raise InvalidParameter(f"{name} names no identifier", parameter=name)
    if len(found) > MAX_IDENTIFIERS:
        raise InvalidParameter(
            f"{name} has more than {MAX_IDENTIFIERS} identifiers", parameter=name
        )
    return tuple(found)


def _identifier(kind: str, item: object, where: str) -> Identifier:
    try:
        if kind == "emails" and isinstance(item, str):
            return email_identifier(item)
        if kind == "phones" and isinstance(item, str):
            return phone_identifier(item)
        if isinstance(item, Mapping) and set(item) == {"provider", _scoped_key(kind)}:
            provider, raw = item["provider"], item[_scoped_key(kind)]
            if isinstance(provider, str) and isinstance(raw, str):
                if kind == "handles":
                    return handle_identifier(provider, raw)
                return provider_user_identifier(provider, raw)
    except InvalidIdentifier:
        pass
    raise InvalidParameter(f"{where} is not a valid {_described(kind)}", parameter=where)


def _scoped_key(kind: str) -> str:
    return "handle" if kind == "handles" else "id"


def _described(kind: str) -> str:
    return {
        "emails": "email address",
        "phones": "phone number (E.164, or a North American national number)",
        "provider_user_ids": 'provider user id ({"provider": …, "id": …})',
        "handles": 'handle ({"provider": …, "handle": …})',
    }[kind]


def hash_identifiers(
    hasher: SubjectHasher, customer_id: str, identifiers: Iterable[Identifier]
) -> tuple[str, ...]:
    """The sorted, unique keyed hashes of ``identifiers`` under the customer's key."""
    return tuple(sorted({hasher.hash(customer_id, str(i)) for i in identifiers}))


def check_note(
    note: object, identifiers: Iterable[Identifier], *, name: str, required: bool = False
) -> str | None:
    """A free-text note (evidence, reason), refused when it repeats an identifier.

    Identifiers are kept only as keyed hashes; a note quoting "jane@…" in clear
    would defeat that, so it is refused rather than stored.
    """
    if note is None and not required:
        return None
    if not isinstance(note, str) or not note.strip():
        raise InvalidParameter(f"{name} must be a non-empty string", parameter=name)
    if len(note) > MAX_NOTE:
        raise InvalidParameter(f"{name} is longer than {MAX_NOTE} characters", parameter=name)
    lowered = note.lower()
    digits = "".join(c for c in note if c.isdigit())
    for identifier in identifiers:
        if _mentioned(identifier, note, lowered, digits):
            raise InvalidParameter(
                f"{name} must not repeat the subject's identifiers "
                "(they are stored only as keyed hashes)",
                parameter=name,
            )
    return note.strip()


def _mentioned(identifier: Identifier, note: str, lowered: str, digits: str) -> bool:
    value = identifier.value
    if identifier.kind is IdentifierKind.EMAIL:
        return value in lowered
    if identifier.kind is IdentifierKind.PHONE:
        national = value[1:]
        return national[-7:] in digits if len(national) >= 7 else national in digits
    bare = value.partition(":")[2]  # provider-scoped: "<provider>:<value>"
    if len(bare) < _MIN_MENTION:
        return False
    if identifier.kind is IdentifierKind.HANDLE:
        return bare in lowered
    return bare in note


def subject_counts(identifiers: Iterable[Identifier]) -> dict[str, int]:
    """How many identifiers of each kind: what a response may say about a subject."""
    counts: dict[str, int] = {}
    for identifier in identifiers:
        counts[identifier.kind.value] = counts.get(identifier.kind.value, 0) + 1
    return dict(sorted(counts.items()))
