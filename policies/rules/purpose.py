"""Rule ``purpose``: data serves only the declared, granted, notice-allowed purpose.

Notice ("Officium Solutions LLC uses this personal data to" and "End User
Personal Data"): provide the Services to the customer, communicate, respond to
support requests, detect and prevent spam, fraud and abuse, meet legal
obligations. "For our End Users, we do not use the data we collect about you
when you use our services for marketing without your consent."

So: every fetch declares a purpose; the caller must have been granted it (a
grant covers its more specific purposes); the policy data must allow it; a
field is released only if its category is one the purpose may receive;
marketing needs every subject's recorded consent; analytics sees pseudonyms
instead of identifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set

from policies.taxonomy import is_within_any
from policies.vocabulary import Identifier, IdentifierKind, Subject

RULE_ID = "purpose"

NOT_GRANTED = "the caller was not granted this purpose"
UNKNOWN = "the purpose is not a known Fides data use"
NOT_ALLOWED = "the privacy notice does not allow this purpose for End User data"
NO_CONSENT = "marketing needs every End User's recorded consent"
CATEGORY = "this purpose may not receive data of this category"

# The data category an identifier is, so identifiers in ``subjects`` are held
# to the same category limits as fields.
IDENTIFIER_CATEGORIES: dict[str, str] = {
    IdentifierKind.EMAIL: "user.contact.email",
    IdentifierKind.PHONE: "user.contact.phone_number",
    IdentifierKind.HANDLE: "user.account.username",
    IdentifierKind.PROVIDER_USER_ID: "user.unique_id",
    IdentifierKind.PSEUDONYM: "user.unique_id.pseudonymous",
}
UNCLASSIFIED_IDENTIFIER = "user"  # an unknown kind is no category any purpose lists


def granted(purpose: str, granted_purposes: Set[str]) -> bool:
    """True when ``purpose`` is, or is a kind of, a purpose granted to the caller."""
    return purpose in granted_purposes or is_within_any(purpose, granted_purposes)


def all_consented(subjects: Iterable[Subject], consented: Callable[[Identifier], bool]) -> bool:
    """True when there is at least one subject and each consented (through any identifier).

    A record naming nobody cannot show anyone's consent, so it fails.
    """
    seen = False
    for subject in subjects:
        seen = True
        if not any(consented(identifier) for identifier in subject.identifiers):
            return False
    return seen


def identifier_category(identifier: Identifier) -> str:
    """The Fides data category of an identifier."""
    return IDENTIFIER_CATEGORIES.get(identifier.kind, UNCLASSIFIED_IDENTIFIER)


def pseudonymized(subject: Subject, pseudonymize: Callable[[Identifier], str]) -> Subject:
    """``subject`` with every identifier replaced by its keyed pseudonym and no age facts."""
    return Subject(
        identifiers=tuple(
            Identifier(IdentifierKind.PSEUDONYM, pseudonymize(identifier))
            for identifier in subject.identifiers
        ),
        age=None,
        role=subject.role,
    )
