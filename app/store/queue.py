"""Queue naming and the Celery settings every process shares; the Enqueuer sends job ids.

Every broker key lives under ``{DESCENT_KEY_PREFIX}:broker:`` (kombu's
``global_keyprefix``), so two deployments with different prefixes on one Redis database
never see each other's messages.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.settings import Settings

TRAIN_TASK = "descent.train_job"
QUEUE = "train"  # the queue's name inside the broker prefix


def broker_prefix(key_prefix: str) -> str:
    """The prefix of every key the broker (kombu) makes for this deployment."""
    return f"{key_prefix}:broker:"


def queue_key(key_prefix: str) -> str:
    """The Redis list that holds the train queue's waiting messages."""
    return broker_prefix(key_prefix) + QUEUE


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API's client and the workers (DESIGN.md reliability)."""
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "global_keyprefix": broker_prefix(settings.key_prefix),
    }
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
        # A broker blip must not kill the running job: it keeps its state and waits out
        # the outage itself (worker.outage).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
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
