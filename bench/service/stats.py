"""The pure arithmetic of the figures: percentiles, medians and their noise, verdicts, job times."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

import numpy as np


def parse_time(stamp: str) -> float:
    """ISO 8601 UTC (millisecond precision) -> unix seconds."""
    return datetime.fromisoformat(stamp).timestamp()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def median_ci(values: list[float], level: float = 0.9) -> tuple[float, float]:
    """Bootstrap interval of the median: how far the noise lets a median of these move."""
    data = np.asarray(values, dtype=float)
    picks = np.random.default_rng(3).integers(0, len(data), (2000, len(data)))
    tail = 50 * (1 - level)
    low, high = np.percentile(np.median(data[picks], axis=1), [tail, 100 - tail])
    return float(low), float(high)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(
    ok: bool, others: float = 0.0, interval: tuple[float, float] | None = None,
    target: float = 0.0,
) -> str:
    """ok / MISSED; marked when the noise interval spans the target, or when other
    processes took CPU (>= 0.3 cores) meanwhile."""
    marks = []
    if interval is not None and interval[0] <= target <= interval[1]:
        marks.append("within noise")
    if others >= 0.3:
        marks.append(f"others {others:.1f} cores")
    return ("ok" if ok else "MISSED") + (f" ({', '.join(marks)})" if marks else "")


def run_seconds(job: dict[str, Any]) -> float:
    return parse_time(job["finished_at"]) - parse_time(job["started_at"])
