"""The access report: what the audit log knows about a subject at one customer (sans-I/O).

Privacy notice, "Your privacy rights" (Access) and the California section:
"the categories of personal information that we have collected or shared
about you", "the categories of sources", "the business reason(s)", "the
categories of third parties with whom we have shared" it (CCPA
§1798.110(a), §1798.115(a); GDPR Art. 15(1)(a)-(c), (g)). Built only from
audit events found by the subject's keyed hashes: categories released,
sources (providers, connections, resources), recipients by class (internal,
affiliate, third party) with how many services, purposes, and the time span.
Nothing here names an End User; recipients are counted, their ids listed so
the customer can identify its own services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.audit import Action, AuditEvent, account_disclosures, format_time, is_disclosure

__all__ = ["access_report", "sources_of"]


def sources_of(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    """Where the subject's data came from: provider, connection and resource of each disclosure."""
    seen: dict[tuple[str, str, str], int] = {}
    for event in events:
        if not is_disclosure(event):
            continue
        key = (event.provider or "unknown", event.connection_id or "unknown", event.resource or "")
        seen[key] = seen.get(key, 0) + event.record_count
    return [
        {"provider": p, "connection_id": c, "resource": r, "records": n}
        for (p, c, r), n in sorted(seen.items())
    ]


def access_report(
    events: Iterable[AuditEvent], *, stored: Mapping[str, Any], searched_hashes: int
) -> dict[str, Any]:
    """The report: disclosures summed up, sources, recipients, purposes, time span, stored data."""
    events = list(events)
    disclosures = account_disclosures(events)
    released = [e for e in events if is_disclosure(e)]
    callers: dict[str, set[str]] = {}
    for event in released:
        callers.setdefault(event.caller_class or "unknown", set()).add(event.caller_id or "")
    actions: dict[str, int] = {}
    for event in events:
        actions[event.action.value] = actions.get(event.action.value, 0) + 1
    moments = sorted(e.occurred_at for e in events)
    summary = disclosures.json()
    return {
        "identifiers_searched": searched_hashes,
        "events": len(events),
        "events_by_action": dict(sorted(actions.items())),
        "time_span": {
            "first": format_time(moments[0]) if moments else None,
            "last": format_time(moments[-1]) if moments else None,
        },
        "disclosures": {
            "events": summary["events"],
            "records": summary["records"],
            "categories": sorted(summary["categories"]),
            "categories_detail": summary["categories"],
            "purposes": sorted(summary["purposes"]),
            "recipients": {
                name: {**detail, "services": sorted(callers.get(name, set()))}
                for name, detail in summary["recipients"].items()
            },
        },
        "sources": sources_of(events),
        "providers": sorted({e.provider for e in released if e.provider}),
        "connections": sorted({e.connection_id for e in released if e.connection_id}),
        "stored": dict(sorted(stored.items())),
        "processor_request_steps": sum(
            1 for e in events if e.action is Action.PROCESSOR_REQUEST_STEP
        ),
    }
