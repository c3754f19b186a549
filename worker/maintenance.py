"""The worker's main-process chores: say it is alive, and re-queue jobs whose worker died."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from app.queue import QUEUE, Enqueuer
from app.registry import WorkerRegistry
from app.settings import Settings, get_settings
from app.store import JobStore
from worker.celery_app import celery_app

logger = logging.getLogger(__name__)

_stop = threading.Event()


def reap_once(store: JobStore, enqueuer: Enqueuer, settings: Settings) -> list[str]:
    """Re-queue jobs whose message is gone; return their ids.

    A running job whose lease lapsed lost its worker: if it asked to be cancelled it ends
    cancelled, if it used up its attempts it fails with worker_lost, else it gets a new
    message. A job queued for long while the broker queue is empty lost its message before
    any worker saw it. A duplicate message is harmless: leases and terminal states guard.
    """
    requeued = []
    if store.client.llen(QUEUE) == 0:
        for job_id in store.queued_jobs_older_than(settings.queued_requeue_seconds):
            logger.warning("job %s: queued without a message; re-queueing it", job_id)
            enqueuer.enqueue(job_id)
            requeued.append(job_id)
    for job_id in store.stale_running_jobs():
        job = store.get_job(job_id)
        if job is None or job["status"] != "running":
            continue
        if job["cancel_requested"]:
            store.finish(job_id, "cancelled")
        elif job["attempts"] >= settings.max_attempts:
            store.finish(
                job_id,
                "failed",
                error={
                    "code": "worker_lost",
                    "message": f"the job's worker was lost; gave up after {job['attempts']} "
                    "attempts",
                },
            )
        else:
            logger.warning("job %s: its worker is gone; re-queueing it", job_id)
            enqueuer.enqueue(job_id)
            requeued.append(job_id)
    return requeued


def _loop(name: str, settings: Settings) -> None:
    store = JobStore.from_settings(settings)
    registry = WorkerRegistry(store.client, settings.key_prefix)
    enqueuer = Enqueuer(celery_app)
    interval = min(settings.heartbeat_seconds, settings.reaper_interval_seconds)
    next_reap = 0.0
    elapsed = 0.0
    while True:
        try:
            registry.beat(name)
            if elapsed >= next_reap:
                next_reap = elapsed + settings.reaper_interval_seconds
                if registry.try_lock_reaper(name, settings.reaper_interval_seconds):
                    reap_once(store, enqueuer, settings)
        except Exception:
            logger.warning("worker maintenance failed; retrying", exc_info=True)
        if _stop.wait(interval):
            break
        elapsed += interval
    registry.leave(name)


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "hostname", None) or "worker"
    _stop.clear()
    threading.Thread(target=_loop, args=(name, get_settings()), daemon=True).start()


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
