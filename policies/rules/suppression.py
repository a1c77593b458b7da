"""Rule ``suppression``: honour erasure, restriction, objection and consent withdrawal.

Notice (YOUR PRIVACY RIGHTS): "Objection: You can let us know that you object
to the collection or use of your personal data for certain purposes. Erasure:
You can request that we erase some or all of your personal data ...
Restriction of Processing: You can ask us to restrict further processing of
your personal data ... Withdrawal of Consent: ... you have the right to change
your mind at any time."

Once a subject is suppressed (per customer; restriction and objection may name
a purpose), the gateway drops their records on every later fetch. Every
identifier of every subject is checked: one match is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from policies.vocabulary import Identifier, Subject

RULE_ID = "suppression"

REASON = "an End User in the record asked for erasure, restriction, objection or withdrew consent"


def any_suppressed(
    subjects: Iterable[Subject], purpose: str, suppressed: Callable[[Identifier, str], bool]
) -> bool:
    """True when any identifier of any subject is suppressed for ``purpose``."""
    for subject in subjects:
        for identifier in subject.identifiers:
            if suppressed(identifier, purpose):
                return True
    return False
