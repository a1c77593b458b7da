"""The console's sans-I/O parts: the disclosures chart and the event page's trace summary."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.audit import Action, AuditEvent, EventDraft, Outcome, genesis_hash, link
from gateway.callers import Caller, CallerKind
from gateway.web.console.chart import disclosure_matrix, layout
from gateway.web.pages import render
from policies.vocabulary import CallerClass

WHEN = datetime(2026, 5, 1, tzinfo=UTC)


def _read(
    seq: int,
    *,
    caller_class: str = "internal",
    categories: tuple[str, ...] = ("user.name",),
    records: int = 1,
    outcome: Outcome = Outcome.ALLOWED,
    **extra: object,
) -> AuditEvent:
    draft = EventDraft(
        customer_id="acme",
        action=Action.RECORDS_READ,
        outcome=outcome,
        problem_type=None if outcome is Outcome.ALLOWED else "https://linkgate.dev/problems/x",
        caller_id="ser_1",
        caller_class=caller_class,
        record_count=records,
        categories=categories,
        **extra,  # type: ignore[arg-type]
    )
    return link(draft, seq, genesis_hash("acme"), WHEN)


def test_the_matrix_counts_disclosures_by_category_and_recipient_class() -> None:
    """Only allowed reads that released records count; classes keep a fixed order."""
    matrix = disclosure_matrix(
        [
            _read(1, categories=("user.name", "user.contact.email")),
            _read(2, caller_class="third_party", categories=("user.name",)),
            _read(3, records=0),  # released nothing
            _read(4, outcome=Outcome.DENIED, records=0),
            _read(5, caller_class="somebody", categories=("user.name",)),
        ]
    )

    assert matrix.events == 3
    assert matrix.classes == ["internal", "third_party", "unknown"]
    assert matrix.counts == {
        "user.name": {"internal": 1, "third_party": 1, "unknown": 1},
        "user.contact.email": {"internal": 1},
    }


def test_bars_are_proportional_and_segments_follow_each_other() -> None:
    """The longest bar fills the plot; a bar half as long is half as wide."""
    chart = layout(
        disclosure_matrix(
            [
                _read(1, categories=("a", "b")),
                _read(2, categories=("a",), caller_class="affiliate"),
            ]
        )
    )

    a, b = chart.bars
    assert (a.category, a.total, b.category, b.total) == ("a", 2, "b", 1)
    first, second = a.segments
    assert first.x + first.width == second.x
    assert first.width + second.width == 2 * b.segments[0].width
    assert [name for name, _ in chart.legend] == ["internal", "affiliate"]


def test_an_empty_period_has_no_bars() -> None:
    """No disclosures: no bars, and the chart still has a sane size."""
    chart = layout(disclosure_matrix([]))

    assert (chart.bars, chart.scale_max) == ((), 0)
    assert chart.height > 0


def test_the_event_page_shows_spans_with_their_http_status() -> None:
    """Each span of the trace summary is a row with its duration and HTTP status."""
    event = _read(
        1,
        trace_id="0" * 32,
        dropped={"public-or-direct": 2},
        trace_summary={
            "spans": [
                {
                    "name": "upstream.fetch",
                    "duration_us": 12_500,
                    "status": "unset",
                    "attributes": {"http.response.status_code": 503, "linkgate.retries": 1},
                }
            ],
            "dropped_spans": 0,
        },
    )
    auditor = Caller(
        id="aud_1",
        kind=CallerKind.AUDITOR,
        name="privacy",
        caller_class=CallerClass.INTERNAL,
        customers=frozenset({"acme"}),
        purposes=frozenset(),
        created_at=WHEN,
    )

    html = render(
        "console/event.html",
        title="Event 1 of acme",
        event=event,
        spans=event.trace_summary["spans"],
        dropped_spans=0,
        has_next=False,
        auditor=auditor,
        customers=["acme"],
        csrf_field="csrf_token",
        csrf_token="t",
    ).body.decode()

    assert '<td data-label="Span">upstream.fetch</td>' in html
    assert '<td data-label="HTTP status">503</td>' in html
    assert "12.5" in html
    assert "linkgate.retries=1" in html
    assert '<code>public-or-direct</code></td><td class="num">2</td>' in html
    assert "First event of the chain" in html
