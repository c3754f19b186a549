"""The training task: a thin adapter from a Celery message (a job id) to a JobRunner."""

from __future__ import annotations

import logging
from functools import lru_cache

from app.settings import get_settings
from app.store.leases import LeaseHolder
from app.store.queue import TRAIN_TASK
from worker.celery_app import celery_app
from worker.outage import RedisOutage
from worker.runner import JobRunner

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def lease_holder() -> LeaseHolder:
    """One store role (and Redis connection pool) per worker process, made after the fork."""
    return LeaseHolder.from_settings(get_settings())


@celery_app.task(
    name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def train_job(job_id: str) -> str:
    """Run one attempt of the job. Nothing is retried here: bad input, divergence and time
    limits end the job; a Redis outage is waited out inside the run; a lost worker comes
    back by redelivery or the reaper."""
    try:
        outcome = JobRunner(lease_holder(), get_settings(), job_id).run()
    except RedisOutage as exc:
        # The lease lapses; once Redis is back the reaper re-queues the job.
        logger.error("job %s: %s; leaving it to the reaper", job_id, exc)
        return "redis outage"
    logger.info("job %s: %s", job_id, outcome)
    return outcome
