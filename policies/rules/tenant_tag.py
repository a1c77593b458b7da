"""Rule ``tenant-tag``: End User data belongs to the customer it was collected for.

Notice: "If you are not a Officium Solutions LLC customer but you engage in
communications powered by Officium Solutions LLC Services (an “End User”), we
may collect and store personal information about you on behalf of a Officium
Solutions LLC customer." and its use is to "Provide Officium Solutions LLC
Services to the Officium Solutions LLC customer on whose behalf we collect or
store the information".

So a caller sees only customers it is entitled to, and a record is released
only under the customer that owns its connection.
"""

from __future__ import annotations

from collections.abc import Set

from policies.vocabulary import Record

RULE_ID = "tenant-tag"

NOT_ENTITLED = "the caller is not entitled to this customer's data"
OTHER_CUSTOMER = "the record is not tagged with the connection owner's customer id"


def caller_entitled(customer_id: str, entitled_customers: Set[str]) -> bool:
    """True when the caller may see data held on behalf of ``customer_id``."""
    return bool(customer_id) and customer_id in entitled_customers


def owned_by(record: Record, customer_id: str) -> bool:
    """True when ``record`` carries the connection owner's customer id."""
    return record.customer_id == customer_id
