"""JobStore: the API's role in the job store: create, read, list and cancel jobs, read curves."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from app.settings import DEFAULT_IDEMPOTENCY_TTL_SECONDS, DEFAULT_JOB_TTL_SECONDS
from app.store import lua
from app.store.base import StoreBase
from app.store.curve import BYTES_PER_POINT, curve_slice
from app.store.keys import STATUSES, is_job_id
from app.store.records import (
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFound,
    LeaseLost,
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
    "IdempotencyConflict",
    "JobAlreadyFinished",
    "JobNotFound",
    "JobStore",
    "LeaseLost",
    "StoreError",
]

logger = logging.getLogger(__name__)

class JobStore(StoreBase):
    """What the API does with jobs: create, list and cancel them, read curves and results."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "descent",
        job_ttl: int = DEFAULT_JOB_TTL_SECONDS,
        idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL_SECONDS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(client, prefix=prefix, job_ttl=job_ttl, clock=clock)
        if idempotency_ttl <= 0:
            raise ValueError(f"idempotency_ttl must be > 0 seconds, got {idempotency_ttl}")
        self.idempotency_ttl = int(idempotency_ttl)

    def _register(self) -> None:
        super()._register()
        self._create = self._script(lua.CREATE)
        self._cancel = self._script(lua.CANCEL)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis | None = None) -> JobStore:
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
        name: str | None,
        idempotency_key: str | None = None,
        iterations: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Store a queued job and return (job, True); a known Idempotency-Key with the same
        spec and name returns (the earlier job, False), with another body it raises
        IdempotencyConflict. Atomic, so concurrent retries create one job. `iterations`,
        when known, is the run's total for the job's progress."""
        if not isinstance(spec, dict):
            raise TypeError(f"spec must be a dict, got {type(spec).__name__}")
        if idempotency_key is not None and not idempotency_key:
            raise ValueError(f"idempotency_key must be non-empty, got {idempotency_key!r}")
        job_id = uuid.uuid4().hex
        print_ = fingerprint(spec, name)
        fields = new_job_fields(job_id, spec, name, self._now(), iterations)
        job_keys = self.keys.job(job_id)
        # Without a key its KEYS slot (the idempotency key) is never read; any key name will do.
        idem_key = self.keys.idempotency(idempotency_key) if idempotency_key else job_keys.job
        created, existing_id, existing_print = self._create(
            keys=[*job_keys.all(), self.keys.seq, self.keys.jobs, idem_key],
            args=[
                job_id,
                print_,
                self.idempotency_ttl,
                "1" if idempotency_key else "0",
                self.keys.job_prefix,
                *(item for pair in fields.items() for item in pair),
            ],
        )
        if created:
            logger.info("job %s queued", job_id)
            return job_document(fields), True
        if text(existing_print) != print_:
            raise IdempotencyConflict(str(idempotency_key))
        existing = self.get_job(text(existing_id))
        if existing is None:
            raise JobNotFound(text(existing_id))
        return existing, False

    def list_jobs(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """(jobs newest first, next_cursor); the cursor asks for strictly older jobs."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        index = self.keys.jobs if status is None else self.keys.status_index(status)
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
            self._forget(gone)
            if len(batch) < wanted:
                break
            upper = f"({int(batch[-1][1])}"
        page = found[:limit]
        next_cursor = str(page[-1][0]) if len(found) > limit else None
        return [job for _, job in page], next_cursor

    def _forget(self, job_ids: Iterable[str]) -> None:
        """Drop the index entries of jobs whose hash has expired."""
        ids = list(job_ids)
        if not ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self.keys.jobs, *ids)
        for status in STATUSES:
            pipe.zrem(self.keys.status_index(status), *ids)
        pipe.execute()
        logger.debug("dropped %d expired job(s) from the indexes", len(ids))

    def request_cancel(self, job_id: str) -> dict[str, Any]:
        """Queued -> cancelled now; running -> cancel_requested; cancelled stays as it is.

        Raises JobNotFound, or JobAlreadyFinished for a succeeded or failed job.
        """
        job_keys = self._job_keys(job_id)
        status = self._cancel(
            keys=job_keys.all(), args=[self._now(), self.job_ttl, job_keys.cancel_channel]
        )
        if status is None:
            raise JobNotFound(job_id)
        if text(status) in ("succeeded", "failed"):
            raise JobAlreadyFinished(text(status), job_id)
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def get_metrics(self, job_id: str) -> dict[str, Any] | None:
        if not is_job_id(job_id):
            return None
        raw = self._redis.get(self.keys.job(job_id).metrics)
        return json.loads(raw) if raw else None

    def load_weights(self, job_id: str) -> bytes | None:
        """A succeeded job's trained model (trainer.model_from_bytes reads it), if kept."""
        if not is_job_id(job_id):
            return None
        blob = self._redis.get(self.keys.job(job_id).weights)
        return bytes(blob) if blob is not None else None

    def read_curve(
        self, job_id: str, *, since: int = 0, max_points: int = 1000
    ) -> dict[str, Any] | None:
        """Losses of the iterations after `since`, downsampled to max_points; one snapshot."""
        if since < 0:
            raise ValueError(f"since must be >= 0, got {since}")
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        if not is_job_id(job_id):
            return None
        job_keys = self.keys.job(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(job_keys.job, "status")
        pipe.strlen(job_keys.losses)
        pipe.getrange(job_keys.losses, min(since, 2**40) * BYTES_PER_POINT, -1)
        pipe.hvals(job_keys.epochs)
        status, length, data, rows = pipe.execute()
        if status is None:
            return None
        total = int(length) // BYTES_PER_POINT
        iterations, losses, following = curve_slice(data, min(since, total), max_points)
        # Rows follow the cursor too: a poll gets only the epochs that ended after `since`.
        epochs = [row for row in map(json.loads, rows) if int(row["iteration"]) > since]
        return {
            "iterations": iterations,
            "loss": losses,
            "next": following,
            "total": total,
            "epochs": sorted(epochs, key=lambda row: int(row["epoch"])),
            "status": text(status),
        }
