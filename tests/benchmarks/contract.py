"""The benchmark JSON contract every ``bench_<name>.py`` writes, and report.py reads.

``var/bench/bench_<name>.json`` holds::

    {"benchmark": "<name>", "machine": "<cpu model, cores, python version>",
     "rows": [{"figure": "<human name>", "value": <number>, "unit": "<unit>",
               "baseline": "<figure of the baseline in the same run> | null",
               "ratio": <value / baseline value> | null}, ...]}

A figure's ratio is taken against a baseline measured in the same run, so it
compares across machines where the absolute values do not.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "var" / "bench"


def machine() -> str:
    """One line: CPU model, cores, Python version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def row(
    figure: str,
    value: float,
    unit: str,
    baseline: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """One figure; ``baseline`` is the (figure, value) it is compared with, if any."""
    return {
        "figure": figure,
        "value": round(value, 3),
        "unit": unit,
        "baseline": baseline[0] if baseline else None,
        "ratio": round(value / baseline[1], 3) if baseline and baseline[1] else None,
    }


def results_path(name: str) -> Path:
    return RESULTS_DIR / f"bench_{name}.json"


def write(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``var/bench/bench_<name>.json``; ``extra`` keys sit beside the contract's."""
    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine(), "rows": rows, **extra}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
