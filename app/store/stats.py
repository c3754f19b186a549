"""What the job store counts for monitoring: job durations by final status and iterations
trained, kept in Redis so that every API process reports the whole truth."""

from __future__ import annotations

from typing import Any

from app.store.keys import KeyLayout

# Upper bounds (seconds) of the job-duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


def count_job_end(
    pipe: Any, keys: KeyLayout, status: str, seconds: float | None, iterations: int
) -> None:
    """Queue, on `pipe`, one ended job's duration (when it ever started) and iterations."""
    if iterations > 0:
        pipe.incrby(keys.stats_iterations, iterations)
    if seconds is None:
        return
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(keys.stats_durations, f"{status}:{bound:g}", 1)
    pipe.hincrby(keys.stats_durations, f"{status}:+Inf", 1)
    pipe.hincrbyfloat(keys.stats_durations, f"{status}:sum", seconds)


def read_durations(raw: dict[bytes, bytes]) -> dict[str, dict[str, float]]:
    """{status: {"1": count, ..., "+Inf": count, "sum": seconds}} from the stats hash."""
    out: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        status, _, bucket = field.decode().partition(":")
        out.setdefault(status, {})[bucket] = float(value)
    return out
