"""The benchmark report: run every bench script, then print one table from their JSON.

    .venv/bin/python tests/benchmarks/report.py [--run] [--quick] [--skip NAME ...]

Without ``--run`` it only reads ``var/bench/bench_*.json`` (the contract in
tests/benchmarks/contract.py) and prints the table. ``make bench`` runs it with
``--run``: the scripts below in turn, each in its own process, then the table.
A full run takes about 10 minutes on the 2-core machine the README names
(audit search at 1,000,000 events about 3, audit verification at 50,000
and 200,000 events about 2, the audited-vs-unaudited gateway about 2, the
gateway table with its 10,000-request memory figure about 1.5, the
instruction count under callgrind about 1, the commit floor a few seconds);
``--quick`` (``make bench-quick``) passes each script smaller sizes and takes
about 3 minutes: its figures are noisier and not the ones to publish.

Besides the table it writes ``var/bench/report.md`` (the same table, for the
README) and ``var/bench/report.json`` (every row, with its benchmark), and
checks the issue's goals for the hot path against the gateway's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contract

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Script:
    name: str  # bench_<name>.py, writing bench_<name>.json
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


SCRIPTS = (
    Script("upstream", quick=("1000",)),
    Script("policies", quick=("--repeats", "2")),
    Script("audit_append", quick=("--events", "1000")),
    Script("audit_search", quick=("--events", "100000", "--queries", "100")),
    Script("audit_verify", quick=("--events", "20000", "80000")),
    Script("audit_overhead", quick=("--seconds", "1", "--rounds", "1")),
    Script("gateway", quick=("--seconds", "1", "--rss-requests", "1000", "--cpu-requests", "300")),
    Script("instructions", quick=("--requests", "100")),
    Script("commit_floor", quick=("--commits", "400")),
)

# The goals for the hot path (figure, test, what it says).
C1_GOAL = "linkgate-postgres c=1 p50 added over passthrough"
GOALS = (
    ("linkgate-postgres c=32 req/s", "ratio", ">=", 0.5, "throughput at c=32 ≥ 0.5x passthrough"),
    (
        C1_GOAL,
        "value",
        "<=",
        0.5,
        "added p50 at c=1 ≤ 0.5 ms",
    ),
    ("linkgate-postgres c=32 p99", "ratio", "<=", 2.0, "p99 at c=32 ≤ 2x passthrough's"),
)


def run_scripts(quick: bool, skip: set[str]) -> dict[str, float]:
    """Run each script; seconds each took. A failing script stops the run."""
    took: dict[str, float] = {}
    for script in SCRIPTS:
        if script.name in skip:
            continue
        args = script.quick if quick else script.full
        path = HERE / f"bench_{script.name}.py"
        print(f"== {path.relative_to(contract.REPO)} {' '.join(args)}".rstrip(), flush=True)
        started = time.monotonic()
        subprocess.run([sys.executable, str(path), *args], check=True, cwd=contract.REPO)
        took[script.name] = time.monotonic() - started
    return took


def load(since: float | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Every contract file's rows, each with its benchmark; and notes on what was left out."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    order = {s.name: n for n, s in enumerate(SCRIPTS)}
    paths = sorted(
        contract.RESULTS_DIR.glob("bench_*.json"),
        key=lambda p: (order.get(p.stem.removeprefix("bench_"), len(order)), p.name),
    )
    for path in paths:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            notes.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        if not isinstance(document, dict) or not {"benchmark", "machine", "rows"} <= set(document):
            notes.append(f"{path.name}: not in the benchmark contract, left out")
            continue
        stale = since is not None and path.stat().st_mtime < since
        if stale:
            notes.append(f"{path.name}: from an earlier run (this run did not rewrite it)")
        for row in document["rows"]:
            rows.append({"benchmark": document["benchmark"], "machine": document["machine"], **row})
    return rows, notes


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "count" and float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | figure | value | unit | ratio | baseline |",
        "|---|---|---:|---|---:|---|",
    ]
    for row in rows:
        value = _number(row["value"], row["unit"])
        lines.append(
            f"| {row['benchmark']} | {row['figure']} | {value} | {row['unit']} "
            f"| {_number(row['ratio'])} | {row['baseline'] or '-'} |"
        )
    return "\n".join(lines)


def _disk_floor(by_figure: dict[tuple[str, str], dict[str, Any]], bound: float) -> str:
    """What the disk alone adds at c=1: every read there waits for one durable commit."""
    flush = by_figure.get(("commit_floor", "PostgreSQL flush added to a commit, p50"))
    if flush is None:
        return ""
    verdict = "more than the goal allows" if flush["value"] > bound else "within the goal"
    return f"; this disk's flush alone adds {flush['value']:.2f} ms to a commit, {verdict}"


def goals(rows: list[dict[str, Any]]) -> list[str]:
    by_figure = {(r["benchmark"], r["figure"]): r for r in rows}
    out = []
    for figure, field, sense, bound, text in GOALS:
        row = by_figure.get(("gateway", figure))
        if row is None or row[field] is None:
            out.append(f"- {text}: not measured")
            continue
        actual = row[field]
        met = actual >= bound if sense == ">=" else actual <= bound
        floor = _disk_floor(by_figure, bound) if figure == C1_GOAL else ""
        out.append(f"- {text}: {'met' if met else 'NOT met'} ({field} {actual:.2f}){floor}")
    for row in rows:
        if row["figure"].startswith("refresh-storm token requests"):
            met = row["value"] == 1
            out.append(
                f"- one refresh per expiring token, {row['figure'].split(', ', 1)[1]}: "
                f"{'met' if met else 'NOT met'} ({row['value']:.0f})"
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the bench scripts first")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (with --run)")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=[s.name for s in SCRIPTS],
        help="scripts not to run (their earlier JSON, if any, is still shown)",
    )
    options = parser.parse_args()
    started = time.time()
    took = run_scripts(options.quick, set(options.skip)) if options.run else {}
    rows, notes = load(started if options.run else None)
    if not rows:
        print("no benchmark results in var/bench/: run with --run", file=sys.stderr)
        return 1
    machines = sorted({r["machine"] for r in rows})
    text = [
        f"Machine: {'; '.join(machines)}",
        "",
        table(rows),
        "",
        "Goals (issue #9, gateway figures of the same run):",
        *goals(rows),
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    if took:
        text += [
            "",
            "Run time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items()),
        ]
    report = "\n".join(text)
    print(report)
    contract.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (contract.RESULTS_DIR / "report.md").write_text(report + "\n")
    (contract.RESULTS_DIR / "report.json").write_text(
        json.dumps({"machines": machines, "rows": rows, "notes": notes}, indent=2) + "\n"
    )
    print("\nwrote var/bench/report.md and var/bench/report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
