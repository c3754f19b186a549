"""LeaseHolder: a worker's role in the job store: the lease on a job and writes fenced by it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.store import lua
from app.store.base import StoreBase
from app.store.curve import BYTES_PER_POINT, losses_to_bytes
from app.store.keys import is_job_id
from app.store.records import JobNotFound, LeaseLost, check_token, dumps, millis, text

logger = logging.getLogger(__name__)


class LeaseHolder(StoreBase):
    """What a worker running a job may do: take, renew and release the job's lease, and
    write its progress, checkpoints and outcome only while the lease is its own."""

    def _register(self) -> None:
        super()._register()
        register = self._script
        self._start = register(lua.START_ATTEMPT)
        self._record = register(lua.RECORD)
        self._save_checkpoint = register(lua.SAVE_CHECKPOINT)
        self._truncate = register(lua.TRUNCATE)
        self._add_warning = register(lua.ADD_WARNING)
        self._acquire = register(lua.ACQUIRE_LEASE)
        self._reclaim = register(lua.RECLAIM)
        self._renew = register(lua.RENEW_LEASE)
        self._release = register(lua.RELEASE_LEASE)

    def acquire_lease(self, job_id: str, token: str, ttl_seconds: float) -> bool:
        """Take the lease of an existing job, or extend it when it is already ours."""
        job_keys = self._job_keys(job_id)
        args = [check_token(token), millis(ttl_seconds)]
        return bool(self._acquire(keys=[job_keys.lease, job_keys.job], args=args))

    def renew_lease(self, job_id: str, token: str, ttl_seconds: float) -> int:
        """Extend the lease and record a heartbeat, only while the lease is ours: 0 if it
        is not, 1 if renewed, 2 if renewed and the job has been asked to stop."""
        job_keys = self._job_keys(job_id)
        args = [check_token(token), millis(ttl_seconds), self._now()]
        return int(self._renew(keys=[job_keys.lease, job_keys.job], args=args))

    def reclaim_lease(self, job_id: str, token: str, ttl_seconds: float) -> str:
        """After a Redis outage let the lease lapse: take it back unless another worker
        holds it, and mark the job running again if the reaper re-queued it meanwhile
        (without counting an attempt: no worker was lost). Returns "ours", "taken" (by
        another worker) or "ended" (the job is terminal or gone)."""
        args = [check_token(token), millis(ttl_seconds)]
        state = int(self._reclaim(keys=self._job_keys(job_id).all(), args=args))
        return {1: "ours", 0: "taken"}.get(state, "ended")

    def cancel_channel(self, job_id: str) -> str:
        """The pub/sub channel on which a cancel request for the running job is announced."""
        return self._job_keys(job_id).cancel_channel

    def release_lease(self, job_id: str, token: str) -> bool:
        """Drop the lease if it is ours; return whether it was."""
        job_keys = self._job_keys(job_id)
        return bool(self._release(keys=[job_keys.lease], args=[check_token(token)]))

    def lease_holder(self, job_id: str) -> str | None:
        if not is_job_id(job_id):
            return None
        holder = self._redis.get(self.keys.job(job_id).lease)
        return text(holder) if holder is not None else None

    def start_attempt(self, job_id: str, token: str) -> int | None:
        """Mark the job running and count the attempt; None for a terminal or unknown job.

        Raises LeaseLost when the lease is not `token`'s (take it with acquire_lease first).
        """
        args = [check_token(token), self._now()]
        attempt = self._start(keys=self._job_keys(job_id).all(), args=args)
        if attempt is None:
            return None
        if attempt == -1:
            raise LeaseLost(job_id, token)
        logger.info("job %s: attempt %d started", job_id, attempt)
        return int(attempt)

    def record_iterations(
        self,
        job_id: str,
        token: str,
        first_iteration: int,
        losses: Any,
        progress: Mapping[str, Any],
    ) -> bool:
        """Write the losses of iterations first_iteration.. and progress; return cancel_requested.

        One round trip. Raises LeaseLost, writing nothing, unless the lease is `token`'s.
        """
        if first_iteration < 1:
            raise ValueError(f"first_iteration must be >= 1, got {first_iteration}")
        data = losses_to_bytes(losses)
        return self._write(job_id, token, first_iteration, data, progress, None)

    def record_epoch(
        self,
        job_id: str,
        token: str,
        row: Mapping[str, Any],
        *,
        progress: Mapping[str, Any] | None = None,
        first_iteration: int = 1,
        losses: Any = None,
    ) -> bool:
        """Store one epoch row (again for the same epoch replaces it), with the losses of
        the epoch's last iterations in the same step when given, so that no poll sees the
        epoch's last loss without its row; return cancel_requested."""
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise ValueError(f"row['epoch'] must be an int >= 1, got {epoch!r}")
        if first_iteration < 1:
            raise ValueError(f"first_iteration must be >= 1, got {first_iteration}")
        data = b"" if losses is None else losses_to_bytes(losses)
        return self._write(job_id, token, first_iteration, data, progress, dict(row))

    def _write(
        self,
        job_id: str,
        token: str,
        first_iteration: int,
        data: bytes,
        progress: Mapping[str, Any] | None,
        epoch_row: dict[str, Any] | None,
    ) -> bool:
        args = [
            check_token(token),
            (first_iteration - 1) * BYTES_PER_POINT,
            data,
            "" if progress is None else dumps(progress),
            self._now(),
            "" if epoch_row is None else str(epoch_row["epoch"]),
            "" if epoch_row is None else dumps(epoch_row),
        ]
        cancel_requested = self._record(keys=self._job_keys(job_id).all(), args=args)
        if cancel_requested == -1:
            raise LeaseLost(job_id, token)
        return bool(cancel_requested)

    def save_checkpoint(self, job_id: str, token: str, blob: bytes) -> None:
        """Replace the job's checkpoint; raises LeaseLost unless the lease is `token`'s."""
        args = [check_token(token), blob]
        if self._save_checkpoint(keys=self._job_keys(job_id).all(), args=args) == -1:
            raise LeaseLost(job_id, token)

    def load_checkpoint(self, job_id: str) -> bytes | None:
        if not is_job_id(job_id):
            return None
        blob = self._redis.get(self.keys.job(job_id).checkpoint)
        return bytes(blob) if blob is not None else None

    def truncate_curve(
        self, job_id: str, iterations: int, epochs: int, *, token: str | None = None
    ) -> None:
        """Keep the first `iterations` losses and epoch rows 1..epochs (resuming a checkpoint).

        With a token, raises LeaseLost (changing nothing) unless the lease is that token's.
        """
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        fence = "" if token is None else check_token(token)
        args = [fence, iterations * BYTES_PER_POINT, epochs]
        if self._truncate(keys=self._job_keys(job_id).all(), args=args) == -1:
            raise LeaseLost(job_id, fence)

    def add_warning(self, job_id: str, message: str) -> bool:
        """Append a warning unless the job already has it; return whether it was added."""
        if not isinstance(message, str) or not message:
            raise ValueError(f"message must be a non-empty string, got {message!r}")
        added = self._add_warning(keys=self._job_keys(job_id).all(), args=[message])
        if added == -1:
            raise JobNotFound(job_id)
        return bool(added)
