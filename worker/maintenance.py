"""The worker's main-process chores: say it is alive, and clean up after dead workers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from app.settings import Settings, get_settings
from app.store.base import UNREACHABLE
from app.store.keys import queue_key
from app.store.reaper import Reaper
from app.store.registry import WorkerRegistry
from app.store.sweeps import SweepStore

logger = logging.getLogger(__name__)

_stop = threading.Event()


def reclaim_grace(settings: Settings) -> float:
    """How long after an outage a live worker may need to take its lapsed lease back."""
    return settings.lease_seconds + 2 * settings.heartbeat_seconds


def redis_restarted_lately(reaper: Reaper, settings: Settings) -> bool:
    """Whether Redis (re)started within the reclaim grace; a Redis that will not say
    (INFO refused by a proxy or a managed service) counts as not restarted."""
    try:
        return reaper.redis_uptime() < reclaim_grace(settings)
    except redis.ResponseError:
        return False


def reap_once(
    reaper: Reaper, settings: Settings, *, after_outage: bool = False,
    sweeps: SweepStore | None = None,
) -> list[str]:
    """Re-queue jobs whose message is gone, repair the fair queue, prune expired jobs
    from the indexes and advance the active sweeps; return the ids sent a new message.

    A running job whose lease lapsed lost its worker: it ends cancelled if it asked to,
    fails with worker_lost once its attempts are used up, and otherwise goes back to
    `queued` with a new message. A job queued for long while the broker queue is empty
    lost its message before any worker saw it. Each transition is one atomic script that
    re-checks its condition and sends the message itself; a duplicate message is harmless
    (leases and terminal states guard). Tenants with waiting jobs get their free slots
    filled (the ending transition does that; this repairs what nothing else could).

    Right after an outage (`after_outage`, or a Redis that restarted recently) running jobs
    are left alone: their workers are alive and taking their leases back.
    """
    requeued = []
    if reaper.client.llen(queue_key(settings.key_prefix)) == 0:
        for job_id in reaper.resend_lost_messages(settings.queued_requeue_seconds):
            logger.warning("job %s: queued without a message; sent a new one", job_id)
            requeued.append(job_id)
    quiet = after_outage or redis_restarted_lately(reaper, settings)
    for job_id in [] if quiet else reaper.running_without_lease():
        outcome = reaper.reap(job_id, settings.max_attempts)
        if outcome == "queued":
            logger.warning("job %s: its worker is gone; re-queued it", job_id)
            requeued.append(job_id)
        elif outcome is not None:
            logger.warning("job %s: its worker is gone; the job ends %s", job_id, outcome)
    reaper.repair_fair_queue()
    reaper.prune_indexes()
    advance_sweeps(sweeps or SweepStore.from_settings(settings, reaper.client), settings)
    return requeued


def advance_sweeps(sweeps: SweepStore, settings: Settings) -> None:
    """Advance every active sweep: what a process that died between a trial's end and its
    sweep's advance left undone. A winner's test evaluation that has not reported back is
    sent again once the broker queue is empty (it is idempotent)."""
    idle = sweeps.client.llen(queue_key(settings.key_prefix)) == 0
    for sweep_id in sweeps.active():
        try:
            sweeps.advance(sweep_id,
                           resend_after=settings.queued_requeue_seconds if idle else None)
        except Exception:
            logger.exception("sweep %s: could not advance", sweep_id)


def _loop(name: str, settings: Settings) -> None:
    reaper = Reaper.from_settings(settings)
    sweeps = SweepStore.from_settings(settings, reaper.client)
    registry = WorkerRegistry(reaper.client, settings.key_prefix)
    interval = min(settings.heartbeat_seconds, settings.reaper_interval_seconds)
    clock = time.monotonic
    next_reap = clock()
    outage = False
    quiet_until = 0.0  # after an outage or a stall, leases are being taken back
    while True:
        beat_started = clock()
        try:
            registry.beat(name)
            if outage or clock() - beat_started > settings.heartbeat_seconds:
                # Redis was unreachable, or stalled without an error: leases may have
                # lapsed under live workers, which are taking them back now.
                if outage:
                    logger.info("worker maintenance: Redis answers again")
                outage = False
                quiet_until = clock() + reclaim_grace(settings)
            if clock() >= next_reap:
                next_reap = clock() + settings.reaper_interval_seconds
                if registry.try_lock_reaper(name, settings.reaper_interval_seconds):
                    reap_once(reaper, settings, after_outage=clock() < quiet_until,
                              sweeps=sweeps)
        except UNREACHABLE as exc:  # an outage: one line when it starts, not a trace a beat
            if not outage:
                logger.warning("worker maintenance: Redis is unreachable (%s); retrying", exc)
            outage = True
        except Exception:
            logger.warning("worker maintenance failed; retrying", exc_info=True)
        if _stop.wait(interval):
            break
    try:
        registry.leave(name)
    except UNREACHABLE:
        logger.warning("worker %s could not say goodbye: Redis is unreachable", name)
    finally:
        reaper.close()


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "hostname", None) or "worker"
    _stop.clear()
    threading.Thread(target=_loop, args=(name, get_settings()), daemon=True).start()


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
