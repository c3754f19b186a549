"""JobStore: the one place that reads and writes jobs in Redis (key layout in app.keys)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from app import lua
from app.curve import BYTES_PER_POINT, curve_slice
from app.keys import STATUSES, TERMINAL_STATUSES, KeyLayout, check_status, is_job_id
from app.leases import LeasedWrites
from app.records import (
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFound,
    LeaseLost,
    StoreError,
    check_token,
    decode_hash,
    dumps,
    fingerprint,
    job_document,
    new_job_fields,
    parse_cursor,
    parse_iso,
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

DEFAULT_JOB_TTL = 7 * 24 * 3600
DEFAULT_IDEMPOTENCY_TTL = 86_400


class JobStore(LeasedWrites):
    """Jobs, their curves, leases and status indexes in Redis; shared by API and worker."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "descent",
        job_ttl: int = DEFAULT_JOB_TTL,
        idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must use decode_responses=False, got True")
        if not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        for label, ttl in (("job_ttl", job_ttl), ("idempotency_ttl", idempotency_ttl)):
            if ttl <= 0:
                raise ValueError(f"{label} must be > 0 seconds, got {ttl}")
        super().__init__(client, KeyLayout(prefix), clock)
        self.job_ttl = int(job_ttl)
        self.idempotency_ttl = int(idempotency_ttl)
        self._create = client.register_script(lua.CREATE)
        self._cancel = client.register_script(lua.CANCEL)
        self._finish = client.register_script(lua.FINISH)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=False,
            socket_connect_timeout=5,
            socket_timeout=30,
            health_check_interval=30,
        )
        return cls(
            client,
            prefix=settings.key_prefix,
            job_ttl=settings.job_ttl_seconds,
            idempotency_ttl=settings.idempotency_ttl_seconds,
        )

    @property
    def client(self) -> redis.Redis:
        client: redis.Redis = self._redis
        return client

    def close(self) -> None:
        self._redis.close()

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
        # Without a key the 14th KEYS slot is never read; any key name will do.
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

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The public Job, or None for an unknown (or expired) id."""
        if not is_job_id(job_id):
            return None
        raw = self._redis.hgetall(self.keys.job(job_id).job)
        return job_document(decode_hash(raw)) if raw else None

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
        status = self._cancel(keys=self._job_keys(job_id).all(), args=[self._now(), self.job_ttl])
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
        pipe.getrange(job_keys.losses, since * BYTES_PER_POINT, -1)
        pipe.hvals(job_keys.epochs)
        status, length, data, rows = pipe.execute()
        if status is None:
            return None
        iterations, losses, following = curve_slice(data, since, max_points)
        return {
            "iterations": iterations,
            "loss": losses,
            "next": following,
            "total": int(length) // BYTES_PER_POINT,
            "epochs": sorted((json.loads(row) for row in rows), key=lambda row: int(row["epoch"])),
            "status": text(status),
        }

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        token: str | None = None,
        error: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        warnings: list[str] | None = None,
        weights: bytes | None = None,
    ) -> bool:
        """Move a queued or running job to a terminal status, once; return whether it moved.

        With a token, only while the lease is that token's or absent. Stores error,
        metrics, (merged) warnings and the trained weights, drops the lease and
        checkpoint, and puts the job TTL on every key of the job.
        """
        if check_status(status) not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(TERMINAL_STATUSES)}, got {status!r}")
        if error is not None and not {"code", "message"} <= set(error):
            raise ValueError(f"error must have 'code' and 'message', got {dict(error)!r}")
        args: list[str | int | bytes] = [
            status,
            "" if token is None else check_token(token),
            self._now(),
            self.job_ttl,
            "" if error is None else dumps(error),
            "" if metrics is None else dumps(metrics),
            dumps(warnings) if warnings else "",
            weights or b"",
        ]
        job_keys = self._job_keys(job_id)
        moved = bool(self._finish(keys=[*job_keys.all(), job_keys.weights], args=args))
        if moved:
            logger.info("job %s finished: %s", job_id, status)
        return moved

    def stale_running_jobs(self) -> list[str]:
        """Ids of running jobs whose lease has lapsed: their worker is gone."""
        running = self._redis.zrange(self.keys.status_index("running"), 0, -1)
        ids = [text(member) for member in running]
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.keys.job(job_id).job, "status")
            pipe.exists(self.keys.job(job_id).lease)
        answers = pipe.execute()
        stale, gone = [], []
        for job_id, status, leased in zip(ids, answers[::2], answers[1::2], strict=True):
            if status is None:
                gone.append(job_id)
            elif status == b"running" and not leased:
                stale.append(job_id)
        self._forget(gone)
        return stale

    def queued_jobs_older_than(self, seconds: float) -> list[str]:
        """Ids of jobs still queued `seconds` after they were created (oldest first)."""
        queued = [text(m) for m in self._redis.zrange(self.keys.status_index("queued"), 0, -1)]
        pipe = self._redis.pipeline(transaction=False)
        for job_id in queued:
            pipe.hmget(self.keys.job(job_id).job, ["status", "created_at"])
        cutoff = self._clock() - timedelta(seconds=seconds)
        old = []
        for job_id, (status, created) in zip(queued, pipe.execute(), strict=True):
            if status == b"queued" and created and parse_iso(text(created)) <= cutoff:
                old.append(job_id)
        return old
