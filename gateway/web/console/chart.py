"""The disclosures chart: categories by recipient classes, as SVG geometry (sans-I/O).

Privacy notice, California section: the categories of personal information
disclosed "and the categories of third parties with whom we have shared" it
"in the preceding 12 months". Here one bar per data category, split by the
class of the caller that received it (internal, affiliate, third_party); a
bar's length is the number of disclosures (allowed ``records.read`` events
that released at least one record, :func:`gateway.audit.is_disclosure`) that
released that category. The template draws the shapes and a data table with
the same numbers beside it (WCAG 1.1.1: the table is the text alternative).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.audit import AuditEvent, is_disclosure

__all__ = ["RECIPIENT_CLASSES", "Bar", "Chart", "Matrix", "Segment", "disclosure_matrix", "layout"]

# Known classes first, in a fixed order, so colours mean the same on every page.
RECIPIENT_CLASSES = ("internal", "affiliate", "third_party", "unknown")
# Colours distinguishable for common colour-vision deficiencies (Okabe-Ito),
# each with at least 3:1 contrast against white (WCAG 1.4.11).
_COLOURS = {
    "internal": "#0072B2",
    "affiliate": "#D55E00",
    "third_party": "#009E73",
    "unknown": "#6b6b6b",
}

WIDTH = 640
LABEL_WIDTH = 200
BAR_HEIGHT = 22
GAP = 10
TOP = 10


@dataclass(slots=True)
class Matrix:
    """Disclosure counts by category, then by recipient class."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    events: int = 0

    def total(self, category: str) -> int:
        return sum(self.counts[category].values())


def disclosure_matrix(events: Iterable[AuditEvent]) -> Matrix:
    matrix = Matrix()
    seen: set[str] = set()
    for event in events:
        if not is_disclosure(event):
            continue
        matrix.events += 1
        recipient = event.caller_class if event.caller_class in _COLOURS else "unknown"
        seen.add(recipient)
        for category in event.categories:
            row = matrix.counts.setdefault(category, {})
            row[recipient] = row.get(recipient, 0) + 1
    matrix.counts = dict(
        sorted(matrix.counts.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    )
    matrix.classes = [c for c in RECIPIENT_CLASSES if c in seen]
    return matrix


@dataclass(frozen=True, slots=True)
class Segment:
    recipient: str
    count: int
    x: int
    width: int
    colour: str


@dataclass(frozen=True, slots=True)
class Bar:
    category: str
    total: int
    y: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: tuple[Bar, ...]
    legend: tuple[tuple[str, str], ...]  # (recipient class, colour)
    scale_max: int


def layout(matrix: Matrix) -> Chart:
    """Where each bar and segment goes; integers only, so the SVG is stable byte for byte."""
    scale_max = max((matrix.total(c) for c in matrix.counts), default=0)
    plot = WIDTH - LABEL_WIDTH - 60  # room for the total at the bar's end
    bars = []
    y = TOP
    for category, row in matrix.counts.items():
        x = LABEL_WIDTH
        segments = []
        for recipient in matrix.classes:
            count = row.get(recipient, 0)
            if not count:
                continue
            width = max(1, round(plot * count / scale_max))
            segments.append(Segment(recipient, count, x, width, _COLOURS[recipient]))
            x += width
        bars.append(Bar(category, matrix.total(category), y, tuple(segments)))
        y += BAR_HEIGHT + GAP
    return Chart(
        width=WIDTH,
        height=max(y + TOP, 2 * TOP + BAR_HEIGHT),
        label_width=LABEL_WIDTH,
        bar_height=BAR_HEIGHT,
        bars=tuple(bars),
        legend=tuple((c, _COLOURS[c]) for c in matrix.classes),
        scale_max=scale_max,
    )
