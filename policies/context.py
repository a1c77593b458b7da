"""What the engine knows about one request: who asks, for whom, and why."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from policies.value_type import value_type
from policies.vocabulary import CallerClass, Identifier


@value_type(kw_only=True)
class AccessContext:
    """One fetch by one service caller, for one declared purpose, on one connection.

    The three callables are the gateway's stores, looked up per End User; the
    engine calls them but never stores what they return beyond the request.
    Build one context per request and reuse it for every record of the page:
    the engine prepares its per-request work once per context object. A value
    type, not a frozen dataclass: built for every request (see policies.value_type).
    """

    service_id: str
    caller_class: CallerClass
    granted_purposes: frozenset[str]  # Fides data-use keys; a grant covers its children
    entitled_customers: frozenset[str]
    connection_customer_id: str  # the customer that owns the connection being read
    purpose: str  # the declared purpose, a Fides data-use key
    now: datetime  # decision time, for ages (the engine never reads a clock)
    consented: Callable[[Identifier], bool]  # recorded marketing consent
    suppressed: Callable[[Identifier, str], bool]  # (identifier, purpose) -> suppressed
    pseudonymize: Callable[[Identifier], str]  # keyed hash, per customer
