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
        used up), "queued" (back in the broker queue, with a new message), or None
        (nothing to do: it ended, or a worker holds its lease again).
        """
        outcome = self._reap(
            keys=self._job_keys(job_id).all(),
            args=[max_attempts, self._now(), self.job_ttl, self.max_running_jobs],
        )
        return None if outcome is None else text(outcome)

    def resend_lost_messages(self, seconds: float) -> list[str]:
        """Send a new message for each job dispatched over `seconds` ago that is still
        `queued` (the caller checked the broker queue is empty: its message was lost);
        return their ids. Jobs waiting for one of their tenant's slots have none, rightly."""
        queued = [text(m) for m in self._redis.zrange(self.keys.status_index("queued"), 0, -1)]
        cutoff = iso(self._clock() - timedelta(seconds=seconds))
        now = self._now()
        return [
            job_id
            for job_id in queued
            if self._resend(keys=self._job_keys(job_id).all(), args=[now, cutoff]) == 1
        ]

    def repair_fair_queue(self) -> int:
        """Send waiting jobs into their tenants' free slots, after freeing the slots of
        jobs that ended; a repair for what a crash or an operator's change left (the
        ending transition does this itself). Returns the tenants looked at."""
        tenants = [text(t) for t in self._redis.smembers(self.keys.tenants_waiting)]
        for tenant in tenants:
            self.dispatch_waiting(tenant)
        return len(tenants)

    def prune_indexes(self) -> int:
        """Drop every job whose keys have expired from the indexes; return how many.
        (Redis's own clock decides, so a worker's clock cannot make it early or late.)"""
        keys = [self.keys.jobs, self.keys.expiring]
        keys += [self.keys.status_index(status) for status in STATUSES]
        total = 0
        while True:
            dropped = int(self._prune(keys=keys, args=[self.keys.prefix, PRUNE_BATCH]))
            total += dropped
            if dropped < PRUNE_BATCH:
                break
        if total:
            logger.info("dropped %d expired job(s) from the indexes", total)
        return total
