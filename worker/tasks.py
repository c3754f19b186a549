"""The training task: a thin adapter from a Celery message (a job id) to a JobRunner."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import redis

from app.queue import TRAIN_TASK
from app.settings import get_settings
from app.store import JobStore
from worker.celery_app import celery_app
from worker.runner import JobRunner

logger = logging.getLogger(__name__)

INFRA_RETRY_SECONDS = 5


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    """One store (and Redis connection pool) per worker process, made after the fork."""
    return JobStore.from_settings(get_settings())


@celery_app.task(
    name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def train_job(self: Any, job_id: str) -> str:
    """Run one attempt of the job. Only an unreachable Redis is retried (capped): bad input,
    divergence and time limits end the job, and a lost worker comes back by redelivery."""
    settings = get_settings()
    try:
        outcome = JobRunner(job_store(), settings, job_id).run()
    except redis.RedisError as exc:
        logger.warning("job %s: Redis unavailable (%s); retrying", job_id, exc)
        raise self.retry(
            exc=exc, countdown=INFRA_RETRY_SECONDS, max_retries=settings.max_attempts
        ) from exc
    logger.info("job %s: %s", job_id, outcome)
    return outcome
