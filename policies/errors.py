"""The one exception the policy package raises on its own account.

::

    Exception
     └── PolicyConfigError   policy data or an operator override is wrong

Identifier parsing raises :class:`ValueError` subclasses from
``policies.identifiers`` because a bad identifier is bad input, not bad
configuration. The gateway translates both into its own error tree at the
boundary; nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable


class PolicyConfigError(Exception):
    """Policy data is invalid; raised at start-up, never while judging records.

    ``problems`` holds one line per problem so an operator can fix them all in
    one pass instead of one restart per mistake.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))
