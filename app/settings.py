"""Service settings read from the environment, shared by the API and the worker."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JOB_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_IDEMPOTENCY_TTL_SECONDS = 86_400
DEFAULT_MAX_RUNNING_JOBS = 2
DEFAULT_MAX_ACTIVE_JOBS = 100
MIN_ADMIN_TOKEN_LENGTH = 16

# Where Linux says how much memory this process's control group may use (v2, then v1).
CGROUP_MEMORY_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def default_job_memory() -> int:
    """A quarter of the memory this process may use: the machine's, or its container's
    (cgroup) limit when that is lower; 4 GiB when neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limit = int(path.read_text().strip())  # "max" (no limit) raises ValueError
        except (OSError, ValueError):
            continue
        if 0 < limit < (total or limit + 1):
            total = limit
        break
    return total // 4 if total > 0 else 4 * 2**30


class Settings(BaseSettings):
    """`REDIS_URL` plus the `DESCENT_*` limits; no secrets live in code."""

    model_config = SettingsConfigDict(
        env_prefix="DESCENT_",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        min_length=1,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis URL (env REDIS_URL, no prefix): job store and Celery broker.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Directory with dataset files that every worker can read; None: built-ins.",
    )
    key_prefix: str = Field(
        default="descent",
        min_length=1,
        description="Prefix of every Redis key the job store owns.",
    )
    job_ttl_seconds: int = Field(
        default=DEFAULT_JOB_TTL_SECONDS,
        gt=0,
        description="How long a finished (succeeded/failed/cancelled) job is kept.",
    )
    idempotency_ttl_seconds: int = Field(
        default=DEFAULT_IDEMPOTENCY_TTL_SECONDS,
        gt=0,
        description="How long an Idempotency-Key is remembered.",
    )
    max_job_seconds: float = Field(
        default=3600,
        gt=0,
        description="A job whose cost estimate exceeds this many seconds is refused.",
    )
    max_inline_seconds: float = Field(
        default=10,
        gt=0,
        description="A request the API computes itself (POST /v1/gradient-check) whose "
        "estimate exceeds this many seconds is refused.",
    )
    task_soft_time_limit: float = Field(
        default=3600,
        gt=0,
        description="Celery soft time limit: the job ends as failed/time_limit.",
    )
    task_time_limit: float = Field(
        default=3660,
        gt=0,
        description="Celery hard time limit: the worker process is killed.",
    )
    visibility_timeout: float = Field(
        default=3900,
        gt=0,
        description="Broker visibility timeout; must exceed the hard time limit.",
    )
    max_attempts: int = Field(
        default=3,
        gt=0,
        description="Attempts (first run plus redeliveries) before a lost job fails.",
    )
    lease_seconds: float = Field(
        default=5,
        gt=0,
        description="TTL of a worker's lease on a running job; it lapses when the worker dies.",
    )
    heartbeat_seconds: float = Field(
        default=1,
        gt=0,
        description="How often a worker renews its lease; must be below lease_seconds.",
    )
    progress_flush_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Flush buffered progress to Redis at least this often.",
    )
    progress_flush_iterations: int = Field(
        default=500,
        gt=0,
        description="Flush buffered progress to Redis after this many iterations.",
    )
    max_iterations: int = Field(
        default=1_000_000,
        gt=0,
        description="A job of more iterations is refused (its curve would exceed 4 MB).",
    )
    max_checkpoint_bytes: int = Field(
        default=64 * 2**20,
        ge=0,
        description="Largest epoch checkpoint (by the cost estimate) kept in Redis while a "
        "job runs. A wider network runs without checkpoints, so that one job cannot fill "
        "Redis's memory; if its worker is lost, it restarts from the beginning.",
    )
    max_weights_bytes: int = Field(
        default=16 * 2**20,
        ge=0,
        description="Largest trained model (its parameters' bytes; the .npz adds a few "
        "hundred) kept in Redis with a succeeded job, for the job TTL: every job keeps its "
        "own, so this bounds Redis's memory per job. A larger model is not kept and the "
        "job's warnings say so.",
    )
    max_body_bytes: int = Field(
        default=1_000_000,
        gt=0,
        description="Largest accepted HTTP request body, in bytes.",
    )
    max_predict_body_bytes: int = Field(
        default=128 * 2**20,
        gt=0,
        description="Largest accepted body of POST /v1/jobs/{id}/predict, in bytes (10,000 "
        "rows of 784 features as JSON take about 80 MB).",
    )
    max_upload_bytes: int = Field(
        default=512 * 2**20,
        gt=0,
        description="Largest uploaded dataset file (POST /v1/datasets), in bytes; a larger "
        "one is refused with 413 while it streams in (a tenant's max_dataset_bytes may be "
        "lower).",
    )
    upload_dir: str | None = Field(
        default=None,
        description="Where the API spools an upload while it streams in (default: the "
        "system's temporary directory).",
    )
    model_cache_bytes: int = Field(
        default=256 * 2**20,
        ge=0,
        description="Trained models each API process keeps for predictions (least recently "
        "used first out), in bytes of weights.",
    )
    reaper_interval_seconds: float = Field(
        default=2,
        gt=0,
        description="How often the reaper looks for running jobs whose worker is gone.",
    )
    queued_requeue_seconds: float = Field(
        default=300,
        gt=0,
        description="A job queued this long while the broker queue is empty lost its message "
        "(a worker took it and died before it could start it); the reaper sends a new one.",
    )
    redis_outage_seconds: float = Field(
        default=300,
        gt=0,
        description="A worker waits this long for an unreachable Redis (backing off), "
        "keeping its job's state, before it gives the job up to the reaper.",
    )
    checkpoint_seconds: float = Field(
        default=30,
        ge=0,
        description="At most one checkpoint per this many seconds of a job's run (and one "
        "at the end of its last epoch); 0 checkpoints every epoch.",
    )
    max_job_memory_bytes: int = Field(
        default_factory=lambda: default_job_memory(),
        gt=0,
        description="A job whose estimated peak memory exceeds this is refused; default a "
        "quarter of the machine's memory (4 GiB when it cannot be read).",
    )
    worker_concurrency: int = Field(
        default=1,
        gt=0,
        description="Celery worker processes per container.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=MIN_ADMIN_TOKEN_LENGTH,
        description="The operator's token for /v1/admin/* (environment only, never logged); "
        "unset: the admin API is closed (python -m app.admin still works).",
    )
    # Each tenant's quotas, unless the operator set its own (DESIGN.md, "Tenants and keys");
    # max_job_seconds's default is DESCENT_MAX_JOB_SECONDS above.
    quota_max_active_jobs: int = Field(
        default=DEFAULT_MAX_ACTIVE_JOBS, ge=0,
        description="A tenant's queued + running jobs; more: 429.",
    )
    quota_max_running_jobs: int = Field(
        default=DEFAULT_MAX_RUNNING_JOBS,
        ge=1,
        description="A tenant's jobs sent to the workers at once; the rest wait, queued.",
    )
    quota_submissions_per_minute: int = Field(
        default=120, ge=0, description="A tenant's submissions in any 60 s; more: 429."
    )
    quota_max_dataset_bytes: int = Field(
        default=2**30, ge=0, description="A tenant's uploaded datasets together; more: 413."
    )
    quota_max_sweep_trials: int = Field(
        default=64, ge=1, description="Trials in one of a tenant's sweeps; more: 422."
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """DESCENT_ADMIN_TOKEN= (compose's default when .env has none) means unset."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                "task_soft_time_limit must be < task_time_limit, "
                f"got {self.task_soft_time_limit} >= {self.task_time_limit}"
            )
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                "visibility_timeout must be > task_time_limit (else the broker redelivers "
                f"running tasks), got {self.visibility_timeout} <= {self.task_time_limit}"
            )
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                "heartbeat_seconds must be < lease_seconds, "
                f"got {self.heartbeat_seconds} >= {self.lease_seconds}"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
