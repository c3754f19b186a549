"""The training task: a thin adapter from a Celery message (a job id) to a JobRunner."""

from __future__ import annotations

import logging
from functools import lru_cache

from app.queue import TRAIN_TASK
from app.settings import get_settings
from app.store import JobStore
from worker.celery_app import celery_app
from worker.runner import JobRunner

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    """One store (and Redis connection pool) per worker process, made after the fork."""
    return JobStore.from_settings(get_settings())


@celery_app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_job(job_id: str) -> str:
    outcome = JobRunner(job_store(), get_settings(), job_id).run()
    logger.info("job %s: %s", job_id, outcome)
    return outcome
