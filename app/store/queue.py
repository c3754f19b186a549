"""The task queue as the API sees it: a Celery client that enqueues by task name only."""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.settings import Settings

TRAIN_TASK = "descent.train_job"
QUEUE = "descent"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API's client and the workers (DESIGN.md reliability)."""
    transport = {"visibility_timeout": settings.visibility_timeout}
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "task_default_queue": QUEUE,
        "worker_pool": "prefork",
        "worker_concurrency": settings.worker_concurrency,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings, main: str = "descent") -> Celery:
    celery = Celery(main)
    celery.conf.update(celery_config(settings))
    return celery


class Enqueuer:
    """Sends a training job's id (never its data) to the workers."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def enqueue(self, job_id: str) -> None:
        self._celery.send_task(TRAIN_TASK, args=[job_id], queue=QUEUE)

    def close(self) -> None:
        self._celery.close()
