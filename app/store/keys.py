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
``idem:{tenant}:{key}`` (string json {job_id, fingerprint}, with a TTL): per tenant.
``tenant:{tid}`` (hash)
    id, name, created_at, and ``quota.{name}`` for each quota the operator set (the
    others follow the settings' defaults).
``tenants`` (sorted set: tenant ids by creation), ``tenants:names`` (hash: name -> id).
``apikey:{sha256 hex of the key}`` (hash)
    key_id, tenant, prefix (a short display prefix), created_at; the key itself is never
    stored. ``apikeys`` (hash: key_id -> digest), ``tenant:{tid}:keys`` (set of key ids).
``tenant:{tid}:jobs`` and ``tenant:{tid}:jobs:status:{status}`` (sorted sets)
    the tenant's own indexes, with the same scores as ``jobs``.
``tenant:{tid}:slots`` (set)
    the tenant's jobs that hold one of its ``max_running_jobs`` slots: sent to the
    workers (a message in the broker queue) or running.
``tenant:{tid}:waiting`` (sorted set, score = seq)
    the tenant's queued jobs beyond its slots, with no message yet; the transition that
    ends one of its jobs sends the oldest (app.store.lua). ``tenants:waiting`` (set)
    names the tenants with such a backlog, for the reaper's repair.
``tenant:{tid}:submissions`` (sorted set, score = Redis time in ms): the last minute's
    submissions, for ``submissions_per_minute``.
``stats:durations`` (hash), ``stats:iterations`` (string)
    monitoring counts that the ending transition adds to (app.store.stats).
``sweep:{id}`` (hash)
    id, tenant, name, status, spec (json: the sweep as submitted, defaults filled in),
    trials (json: each trial's params and iterations), created_at, started_at,
    finished_at, cancel_requested, winner (json), test (json), error (json),
    evaluation ("" / "sent" / "done") and evaluation_sent_at (unix seconds).
    Trials (jobs) carry sweep_id and trial in their own hash.
``sweep:{id}:jobs`` (hash: trial number -> job id): the trials made so far; each is
    claimed here before its job is created with that id (app.store.sweeps).
``sweep:{id}:lock`` (string with a PX TTL): one process at a time advances the sweep.
``tenant:{tid}:sweeps`` (sorted set, score = a ``jobs:seq`` INCR): the tenant's sweeps.
``sweeps:active`` (set): sweeps not yet ended, which the reaper advances as a safety net.
``dataset:{id}`` (hash)
    an upload: id, tenant, name, sha256, bytes, created_at, info (json: sizes, classes,
    preprocessing, columns, the file's name and size). ``tenant:{tid}:datasets`` (hash:
    name -> id), ``tenant:{tid}:dataset_bytes`` (string: the bytes of its uploads).
``blob:{sha256}`` (hash: bytes, chunks) and ``blob:{sha256}:{i}`` (strings of at most
    8 MiB): an upload's stored form (trainer.uploads.to_bytes), addressed by its content;
    ``blob:{sha256}:refs`` (set) names the uploads that hold it, and the last one deleted
    deletes it. Uploads never expire; a job names one by id in its spec's dataset.
``workers`` (sorted set)
    member = a worker's name, score = the unix time it last said it was alive.
``reaper:lock`` (string with a PX TTL): one worker at a time looks for lost jobs.
``events`` (a pub/sub channel): the id of each job that changed, from the script that
    changed it (app.api.events wakes the job's followers).

A terminal job gets the job TTL on its hash, losses, epochs and metrics, and loses its
lease and checkpoint; queued and running jobs never expire. The scripts in app.store.lua
that change a job receive ``JobKeys.all()`` as KEYS, in that order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "pruned"]
STATUSES: tuple[Status, ...] = get_args(Status)
# "pruned": a sweep's trial stopped early by its sweep's median rule (app.sweeps).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "pruned"})
SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
SWEEP_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# What JobKeys.all() holds before the status indexes, in order (app.store.lua's KEYS).
FIXED_JOB_KEY_NAMES = ("job", "losses", "epochs", "metrics", "checkpoint", "lease",
                       "expiring", "stats_durations", "stats_iterations", "queue")
FIXED_JOB_KEYS = len(FIXED_JOB_KEY_NAMES)
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_DATASET_ID = re.compile(r"ds-[0-9a-f]{20}")
QUEUE = "train"  # the train queue's name inside the broker prefix


def broker_prefix(key_prefix: str) -> str:
    """The prefix of every key the broker (kombu) makes for this deployment."""
    return f"{key_prefix}:broker:"


def queue_key(key_prefix: str) -> str:
    """The Redis list that holds the train queue's waiting messages (kombu's Redis
    transport keeps a priority-0 queue's messages in a list named after the queue)."""
    return broker_prefix(key_prefix) + QUEUE


def is_job_id(job_id: str) -> bool:
    """Whether `job_id` has the shape of an id this store hands out (uuid4 hex)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def is_dataset_id(ref: str) -> bool:
    """Whether `ref` has the shape of an upload's id (app.store.uploads.new_dataset_id)."""
    return isinstance(ref, str) and _DATASET_ID.fullmatch(ref) is not None


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
    queue: str  # the broker's train queue: transitions that dispatch a job push its message
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

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    @property
    def queue(self) -> str:
        return queue_key(self.prefix)

    @property
    def events(self) -> str:
        """Pub/sub channel, not a key: each change to a job (progress, an epoch, its status,
        a warning) publishes the job's id here; each API process subscribes once."""
        return f"{self.prefix}:events"

    # Tenants and keys. app.store.lua builds the tenant:{tid}:* names the same way.
    def tenant(self, tenant_id: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}"

    @property
    def tenants(self) -> str:
        return f"{self.prefix}:tenants"

    @property
    def tenant_names(self) -> str:
        return f"{self.prefix}:tenants:names"

    @property
    def tenants_waiting(self) -> str:
        return f"{self.prefix}:tenants:waiting"

    def tenant_keys(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:keys"

    def api_key(self, digest: str) -> str:
        return f"{self.prefix}:apikey:{digest}"

    @property
    def key_ids(self) -> str:
        return f"{self.prefix}:apikeys"

    def tenant_jobs(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:jobs"

    def tenant_status_index(self, tenant_id: str, status: str) -> str:
        return f"{self.tenant(tenant_id)}:jobs:status:{check_status(status)}"

    def tenant_slots(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:slots"

    def tenant_waiting(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:waiting"

    def tenant_submissions(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:submissions"

    # Sweeps (app.store.sweeps).
    def sweep(self, sweep_id: str) -> str:
        return f"{self.prefix}:sweep:{sweep_id}"

    def sweep_jobs(self, sweep_id: str) -> str:
        return f"{self.sweep(sweep_id)}:jobs"

    def sweep_lock(self, sweep_id: str) -> str:
        return f"{self.sweep(sweep_id)}:lock"

    def tenant_sweeps(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:sweeps"

    @property
    def active_sweeps(self) -> str:
        return f"{self.prefix}:sweeps:active"

    # Uploaded datasets (app.store.uploads).
    def dataset(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}"

    def tenant_datasets(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:datasets"

    def tenant_dataset_bytes(self, tenant_id: str) -> str:
        return f"{self.tenant(tenant_id)}:dataset_bytes"

    def blob(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}"

    def blob_chunk(self, digest: str, index: int) -> str:
        return f"{self.blob(digest)}:{index}"

    def blob_refs(self, digest: str) -> str:
        return f"{self.blob(digest)}:refs"

    def curve_keys(self, job_id: str) -> tuple[str, str, str]:
        """The job's hash, losses and epochs: what a curve's read needs (a poll builds
        these three names, not all of JobKeys)."""
        base = f"{self.job_prefix}{job_id}"
        return base, f"{base}:losses", f"{base}:epochs"

    def job(self, job_id: str) -> JobKeys:
        base, losses, epochs = self.curve_keys(job_id)
        return JobKeys(
            job=base,
            losses=losses,
            epochs=epochs,
            metrics=f"{base}:metrics",
            checkpoint=f"{base}:checkpoint",
            lease=f"{base}:lease",
            cancel_channel=f"{base}:cancel",
            status_indexes=tuple(self.status_index(status) for status in STATUSES),
            expiring=self.expiring,
            stats_durations=self.stats_durations,
            stats_iterations=self.stats_iterations,
            queue=self.queue,
            weights=f"{base}:weights",
        )
