"""What the job store counts for monitoring: job durations by final status and iterations
trained, kept in Redis so that every API process reports the whole truth. The ending
transition itself adds to them (app.store.lua's count_end), so a job counts exactly once."""

from __future__ import annotations

# Upper bounds (seconds) of the job-duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


def read_durations(raw: dict[bytes, bytes]) -> dict[str, dict[str, float]]:
    """{status: {"1": count, ..., "+Inf": count, "sum": seconds}} from the stats hash."""
    out: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        status, _, bucket = field.decode().partition(":")
        out.setdefault(status, {})[bucket] = float(value)
    return out
