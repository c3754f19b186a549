"""JobStore: the API's role in the job store: create, read, list and cancel jobs, read curves."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import redis

from app.settings import (
    DEFAULT_IDEMPOTENCY_TTL_SECONDS,
    DEFAULT_JOB_TTL_SECONDS,
    DEFAULT_MAX_RUNNING_JOBS,
)
from app.store import lua
from app.store.base import StoreBase
from app.store.curve import BYTES_PER_POINT, check_curve_query, curve_document
from app.store.keys import STATUSES, is_dataset_id, is_job_id
from app.store.queue import TaskMessages
from app.store.records import (
    DatasetGone,
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFound,
    LeaseLost,
    QuotaExceeded,
    StoreError,
    decode_hash,
    fingerprint,
    job_document,
    new_job_fields,
    parse_cursor,
    text,
    utc_now,
)

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = [
    "DatasetGone",
    "IdempotencyConflict",
    "JobAlreadyFinished",
    "JobNotFound",
    "JobStore",
    "LeaseLost",
    "QuotaExceeded",
    "StoreError",
]

logger = logging.getLogger(__name__)

UNLIMITED = 2**53  # a quota passed to Lua when a caller sets none

class JobStore(StoreBase):
    """What the API does with jobs: create, list and cancel them, read curves and results."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "descent",
        job_ttl: int = DEFAULT_JOB_TTL_SECONDS,
        idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL_SECONDS,
        max_running_jobs: int = DEFAULT_MAX_RUNNING_JOBS,
        clock: Callable[[], datetime] = utc_now,
        messages: TaskMessages | None = None,
    ) -> None:
        super().__init__(
            client, prefix=prefix, job_ttl=job_ttl, max_running_jobs=max_running_jobs,
            clock=clock,
        )
        self.messages = messages or TaskMessages()
        if idempotency_ttl <= 0:
            raise ValueError(f"idempotency_ttl must be > 0 seconds, got {idempotency_ttl}")
        self.idempotency_ttl = int(idempotency_ttl)

    def _register(self) -> None:
        super()._register()
        self._create = self._script(lua.CREATE)
        self._cancel = self._script(lua.CANCEL)
        self._read_curve = self._script(lua.READ_CURVE)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis | None = None) -> Self:
        store = super().from_settings(settings, client)
        store.idempotency_ttl = settings.idempotency_ttl_seconds
        return store

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            logger.warning("redis ping failed", exc_info=True)
            return False

    def create_job(
        self,
        spec: dict[str, Any],
        *,
        tenant: str,
        name: str | None,
        idempotency_key: str | None = None,
        iterations: int | None = None,
        quotas: Mapping[str, int | float] | None = None,
        job_id: str | None = None,
        extra: Mapping[str, str] | None = None,
        submission: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Store a queued job of `tenant` and dispatch it, or put it in the tenant's waiting
        line when its max_running_jobs slots are taken; return (job, True). A known
        Idempotency-Key (the tenant's own) with the same spec and name returns (the earlier
        job, False), with another body it raises IdempotencyConflict. Over the tenant's
        `quotas` (max_active_jobs, submissions_per_minute; none when None) it raises
        QuotaExceeded. One atomic script: concurrent retries create one job, and a job
        exists only with its message sent or its place in the line. `iterations`, when
        known, is the run's total for the job's progress. `job_id`: an id chosen (and
        claimed) beforehand, by a sweep, which also gives `extra` hash fields (sweep_id,
        trial); it must not be a job's already. `submission` False: a sweep's trial, which
        submissions_per_minute neither limits nor counts (the sweep was the submission).
        An upload the spec's dataset names must still exist (else DatasetGone): checked in
        the same script, which a DELETE of it (app.store.uploads) cannot come between."""
        if not isinstance(spec, dict):
            raise TypeError(f"spec must be a dict, got {type(spec).__name__}")
        if idempotency_key is not None and not idempotency_key:
            raise ValueError(f"idempotency_key must be non-empty, got {idempotency_key!r}")
        job_id = job_id or uuid.uuid4().hex
        print_ = fingerprint(spec, name)
        new_fields = {**new_job_fields(job_id, spec, name, self._now(), iterations),
                      **(extra or {})}
        fields = {**new_fields, "message": self.messages.for_job(job_id)}
        job_keys = self.keys.job(job_id)
        # Without a key its KEYS slot (the idempotency key) is never read; any key name will do.
        idem_key = (
            self.keys.idempotency(tenant, idempotency_key) if idempotency_key else job_keys.job
        )
        limits = quotas or {}
        dataset = spec.get("dataset")
        requires = (self.keys.dataset(dataset) if isinstance(dataset, str)
                    and is_dataset_id(dataset) else job_keys.job)
        created, *found = self._create(
            keys=[
                *job_keys.all(), self.keys.seq, self.keys.jobs, idem_key,
                self.keys.tenant_jobs(tenant), self.keys.tenant_submissions(tenant),
                self.keys.tenant_slots(tenant), self.keys.tenant_waiting(tenant),
                self.keys.tenants_waiting, requires,
            ],
            args=[
                job_id,
                print_,
                self.idempotency_ttl,
                "1" if idempotency_key else "0",
                self.keys.job_prefix,
                tenant,
                new_fields["created_at"],
                limits.get("max_active_jobs", UNLIMITED),
                limits.get("submissions_per_minute", UNLIMITED) if submission else -1,
                self.max_running_jobs,
                *(item for pair in fields.items() for item in pair),
            ],
        )
        if created == -3:
            raise DatasetGone(spec.get("dataset"))
        if created == -1:
            raise QuotaExceeded.refusal(found)
        existing_id, existing_print = found
        if created:
            logger.info("job %s queued for tenant %s", job_id, tenant)
            return job_document(new_fields), True
        if text(existing_print) != print_:
            raise IdempotencyConflict(str(idempotency_key))
        existing = self.get_job(text(existing_id), tenant=tenant)
        if existing is None:
            raise JobNotFound(text(existing_id))
        return existing, False

    def list_jobs(
        self,
        *,
        tenant: str,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The tenant's (jobs newest first, next_cursor); the cursor asks for strictly
        older jobs."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if status is None:
            index = self.keys.tenant_jobs(tenant)
        else:
            index = self.keys.tenant_status_index(tenant, status)
        upper = "+inf" if cursor is None else f"({parse_cursor(cursor)}"
        found: list[tuple[int, dict[str, Any]]] = []
        while len(found) <= limit:  # one more than a page tells whether a next page exists
            wanted = limit + 1 - len(found)
            batch = self._redis.zrange(
                index, upper, "-inf", desc=True, byscore=True, offset=0, num=wanted,
                withscores=True,
            )
            pipe = self._redis.pipeline(transaction=False)
            for member, _ in batch:
                pipe.hgetall(self.keys.job(text(member)).job)
            gone: list[str] = []
            for (member, score), raw in zip(batch, pipe.execute(), strict=True):
                fields = decode_hash(raw)
                if not fields:
                    gone.append(text(member))
                elif status is None or fields["status"] == status:
                    found.append((int(score), job_document(fields)))
            self._forget(tenant, gone)
            if len(batch) < wanted:
                break
            upper = f"({int(batch[-1][1])}"
        page = found[:limit]
        next_cursor = str(page[-1][0]) if len(found) > limit else None
        return [job for _, job in page], next_cursor

    def _forget(self, tenant: str, job_ids: Iterable[str]) -> None:
        """Drop the index entries of the tenant's jobs whose hash has expired."""
        ids = list(job_ids)
        if not ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self.keys.jobs, *ids)
        pipe.zrem(self.keys.tenant_jobs(tenant), *ids)
        for status in STATUSES:
            pipe.zrem(self.keys.status_index(status), *ids)
            pipe.zrem(self.keys.tenant_status_index(tenant, status), *ids)
        pipe.execute()
        logger.debug("dropped %d expired job(s) from the indexes", len(ids))

    def waiting_backlog(self) -> int:
        """Queued jobs of every tenant that wait for one of its max_running_jobs slots."""
        tenants = [text(t) for t in self._redis.smembers(self.keys.tenants_waiting)]
        pipe = self._redis.pipeline(transaction=False)
        for tenant in tenants:
            pipe.zcard(self.keys.tenant_waiting(tenant))
        return sum(pipe.execute()) if tenants else 0

    def request_cancel(self, job_id: str, *, tenant: str) -> dict[str, Any]:
        """Queued -> cancelled now; running -> cancel_requested; cancelled stays as it is.

        Raises JobNotFound (also for another tenant's job), or JobAlreadyFinished for a
        succeeded or failed job.
        """
        job_keys = self._job_keys(job_id)
        status = self._cancel(
            keys=job_keys.all(),
            args=[self._now(), self.job_ttl, job_keys.cancel_channel, self.max_running_jobs,
                  tenant],
        )
        if status is None:
            raise JobNotFound(job_id)
        if text(status) in ("succeeded", "failed"):
            raise JobAlreadyFinished(text(status), job_id)
        job = self.get_job(job_id, tenant=tenant)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def get_metrics(self, job_id: str, *, tenant: str) -> dict[str, Any] | None:
        """A succeeded job's metrics; None when it has none, or is another tenant's."""
        return self._owned(job_id, tenant, "metrics", json.loads)

    def load_weights(self, job_id: str, *, tenant: str) -> bytes | None:
        """A succeeded job's trained model (trainer.model_from_bytes reads it), if kept."""
        return self._owned(job_id, tenant, "weights", bytes)

    def _owned(self, job_id: str, tenant: str, key: str, read: Callable[[bytes], Any]) -> Any:
        """One of the job's keys (a JobKeys field), read, if the job is the tenant's."""
        if not is_job_id(job_id):
            return None
        job_keys = self.keys.job(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(job_keys.job, "tenant")
        pipe.get(getattr(job_keys, key))
        owner, raw = pipe.execute()
        if owner is None or text(owner) != tenant or raw is None:
            return None
        return read(raw)

    def read_curve(
        self, job_id: str, *, tenant: str, since: int = 0, max_points: int = 1000
    ) -> dict[str, Any] | None:
        """Losses of the iterations after `since`, downsampled to max_points; one snapshot.
        None for an unknown job or another tenant's. (The API awaits the same read on its
        event loop, with the key's check in the same script: KeyCheck.curve.)"""
        check_curve_query(since, max_points)
        if not is_job_id(job_id):
            return None
        job_keys = self.keys.job(job_id)
        # One script, so another tenant's curve is never read out (nor its size timed).
        found = self._read_curve(
            keys=[job_keys.job, job_keys.losses, job_keys.epochs],
            args=[tenant, min(since, 2**40) * BYTES_PER_POINT],
        )
        return curve_document(found, since, max_points) if found else None
