"""Reaper: a worker's role in cleaning up after dead workers and expired jobs, each
transition one atomic script that re-checks its own condition."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.store import lua
from app.store.base import StoreBase
from app.store.keys import STATUSES
from app.store.records import iso, text

logger = logging.getLogger(__name__)

PRUNE_BATCH = 1000  # index entries dropped per script call, so Redis never blocks long


class Reaper(StoreBase):
    """Finds jobs whose worker died or whose message was lost, and prunes the indexes."""

    def _register(self) -> None:
        super()._register()
        self._reap = self._script(lua.REAP)
        self._resend = self._script(lua.RESEND)
        self._prune = self._script(lua.PRUNE)

    def redis_uptime(self) -> float:
        """Seconds since Redis (re)started: leases that lapsed while it was down say
        nothing about their workers until those have had time to take them back."""
        return float(self._redis.info("server")["uptime_in_seconds"])

    def running_without_lease(self) -> list[str]:
        """Ids of running jobs whose lease has lapsed (a snapshot: `reap` re-checks)."""
        ids = [text(m) for m in self._redis.zrange(self.keys.status_index("running"), 0, -1)]
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(self.keys.job(job_id).lease)
        return [job_id for job_id, leased in zip(ids, pipe.execute(), strict=True) if not leased]

    def reap(self, job_id: str, max_attempts: int) -> str | None:
        """End or re-queue a running job whose lease lapsed, atomically with that check.

        Returns "cancelled" (it had asked to be), "failed" (worker_lost: its attempts are
        used up), "queued" (the caller sends it a new message), or None (nothing to do:
        it ended, or a worker holds its lease again).
        """
        outcome = self._reap(
            keys=self._job_keys(job_id).all(), args=[max_attempts, self._now(), self.job_ttl]
        )
        return None if outcome is None else text(outcome)

    def queued_without_message(self, seconds: float) -> list[str]:
        """Ids of jobs queued for over `seconds` (the caller checked the broker queue is
        empty); each is marked as re-sent, so the caller must send its message."""
        queued = [text(m) for m in self._redis.zrange(self.keys.status_index("queued"), 0, -1)]
        cutoff = iso(self._clock() - timedelta(seconds=seconds))
        now = self._now()
        return [
            job_id
            for job_id in queued
            if self._resend(keys=self._job_keys(job_id).all(), args=[now, cutoff]) == 1
        ]

    def prune_indexes(self) -> int:
        """Drop every job whose keys have expired from the indexes; return how many.
        (Redis's own clock decides, so a worker's clock cannot make it early or late.)"""
        keys = [self.keys.jobs, self.keys.expiring]
        keys += [self.keys.status_index(status) for status in STATUSES]
        total = 0
        while True:
            dropped = int(self._prune(keys=keys, args=[self.keys.job_prefix, PRUNE_BATCH]))
            total += dropped
            if dropped < PRUNE_BATCH:
                break
        if total:
            logger.info("dropped %d expired job(s) from the indexes", total)
        return total
