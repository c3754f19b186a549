"""The job store's Redis key layout: key names, the job hash fields, status names.

Every key lives under ``{prefix}:``:

``job:{id}`` (hash)
    id, name (absent when null), status, spec (json), seq, created_at, queued_at (when
    it last entered the queue), started_at,
    finished_at, heartbeat_at (ISO 8601 UTC, "" when unset), progress (json),
    cancel_requested ("0"/"1"), attempts, warnings (json list), error (json or "").
``job:{id}:losses`` (string)
    float32 little-endian; iteration k (from 1) at byte offset (k - 1) * 4, written
    with SETRANGE so a redelivered task that rewrites iterations never duplicates them.
``job:{id}:epochs`` (hash)
    epoch number -> json row {epoch, iteration, train_loss, train_accuracy, val_loss,
    val_accuracy}.
``job:{id}:metrics`` (string json), ``job:{id}:checkpoint`` (bytes),
``job:{id}:lease`` (string: the owning worker's token, with a PX TTL).
``job:{id}:weights`` (bytes)
    the chosen model of a succeeded job, as trainer.model_to_bytes writes it (an .npz);
    set by the finishing transition itself, with the job TTL.
``jobs`` (sorted set)
    score = ``jobs:seq`` (a global INCR), member = id; ``jobs:status:{status}`` holds
    the same scores per status.
``jobs:expiring`` (sorted set)
    member = id of a terminal job, score = a unix time (Redis's clock) by which its keys
    have expired. The reaper
    drops expired jobs from every index (app.store.reaper.Reaper.prune_indexes), so the
    indexes shrink back as jobs expire even under ``noeviction``.
``idem:{key}`` (string json {job_id, fingerprint}, with a TTL).
``stats:durations`` (hash), ``stats:iterations`` (string)
    monitoring counts that the ending transition adds to (app.store.stats).
``workers`` (sorted set)
    member = a worker's name, score = the unix time it last said it was alive.
``reaper:lock`` (string with a PX TTL): one worker at a time looks for lost jobs.

A terminal job gets the job TTL on its hash, losses, epochs and metrics, and loses its
lease and checkpoint; queued and running jobs never expire. The scripts in app.store.lua
that change a job receive ``JobKeys.all()`` as KEYS, in that order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = get_args(Status)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# What JobKeys.all() holds before the status indexes, in order (app.store.lua's KEYS).
FIXED_JOB_KEY_NAMES = ("job", "losses", "epochs", "metrics", "checkpoint", "lease",
                       "expiring", "stats_durations", "stats_iterations")
FIXED_JOB_KEYS = len(FIXED_JOB_KEY_NAMES)
_JOB_ID = re.compile(r"[0-9a-f]{32}")


def is_job_id(job_id: str) -> bool:
    """Whether `job_id` has the shape of an id this store hands out (uuid4 hex)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job, plus the status indexes its transitions touch."""

    job: str
    losses: str
    epochs: str
    metrics: str
    checkpoint: str
    lease: str
    cancel_channel: str  # pub/sub, not a key: CANCEL publishes here for the running worker
    status_indexes: tuple[str, ...]
    expiring: str
    stats_durations: str
    stats_iterations: str
    weights: str  # not in all(): only the finishing script writes it (KEYS[EXTRA + 1])

    def all(self) -> list[str]:
        """KEYS for a job-scoped script: those of FIXED_JOB_KEY_NAMES, then the status
        indexes in the order of STATUSES (see app.store.lua)."""
        return [*(getattr(self, name) for name in FIXED_JOB_KEY_NAMES), *self.status_indexes]


@dataclass(frozen=True)
class KeyLayout:
    """Key names under one prefix."""

    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:jobs:seq"

    @property
    def job_prefix(self) -> str:
        return f"{self.prefix}:job:"

    def status_index(self, status: str) -> str:
        return f"{self.prefix}:jobs:status:{check_status(status)}"

    @property
    def expiring(self) -> str:
        return f"{self.prefix}:jobs:expiring"

    @property
    def stats_durations(self) -> str:
        """Hash: "{status}:{bucket}" -> jobs ended with that status within the bucket's
        seconds, "{status}:sum" -> their seconds (app.store.stats)."""
        return f"{self.prefix}:stats:durations"

    @property
    def stats_iterations(self) -> str:
        """Counter: iterations of every job that ended (app.store.stats)."""
        return f"{self.prefix}:stats:iterations"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def reaper_lock(self) -> str:
        return f"{self.prefix}:reaper:lock"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def job(self, job_id: str) -> JobKeys:
        base = f"{self.job_prefix}{job_id}"
        return JobKeys(
            job=base,
            losses=f"{base}:losses",
            epochs=f"{base}:epochs",
            metrics=f"{base}:metrics",
            checkpoint=f"{base}:checkpoint",
            lease=f"{base}:lease",
            cancel_channel=f"{base}:cancel",
            status_indexes=tuple(self.status_index(status) for status in STATUSES),
            expiring=self.expiring,
            stats_durations=self.stats_durations,
            stats_iterations=self.stats_iterations,
            weights=f"{base}:weights",
        )
