"""Queue naming, the Celery settings every process shares, and the train task's message.

Every broker key lives under ``{DESCENT_KEY_PREFIX}:broker:`` (kombu's
``global_keyprefix``), so two deployments with different prefixes on one Redis database
never see each other's messages.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from celery import Celery
from kombu import Connection

from app.settings import Settings
from app.store.keys import QUEUE, broker_prefix, queue_key

__all__ = [
    "DELIVERY_TAG", "EVALUATE_TASK", "QUEUE", "TRAIN_TASK", "TaskMessages", "broker_prefix",
    "celery_config", "make_celery", "queue_key",
]

TRAIN_TASK = "descent.train_job"
EVALUATE_TASK = "descent.evaluate_sweep_winner"  # a sweep winner's one test evaluation


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


# Stands in a message for the delivery tag; each dispatch (app.store.lua) replaces it with a
# tag of its own, as kombu's unacked bookkeeping needs.
DELIVERY_TAG = "DESCENT_DELIVERY_TAG"
_MEMORY_QUEUE = "descent-message"
_memory_lock = threading.Lock()  # kombu's memory transport keeps its queues per class


class TaskMessages:
    """Builds the broker message of a job's train task without sending it.

    The store keeps the message with the job, and its Lua transitions push it onto the
    broker queue (LPUSH) in the same atomic step that dispatches the job, so a job is never
    dispatched without its message (nor counted running without one). Celery and kombu
    build the message themselves, on kombu's in-memory transport, whose messages have the
    layout its Redis transport pushes.
    """

    def __init__(self) -> None:
        # What shapes a message: the serializer and the queue; no broker is ever reached.
        self._celery = Celery("descent-messages")
        self._celery.conf.update(
            task_serializer="json", accept_content=["json"], task_default_queue=QUEUE
        )
        self._connection = Connection("memory://")

    def for_job(self, job_id: str) -> bytes:
        return self.for_task(TRAIN_TASK, [job_id], job_id)

    def for_task(self, name: str, args: list[Any], task_id: str) -> bytes:
        """The message of task `name` with `args`, its delivery tag DELIVERY_TAG."""
        with _memory_lock:
            self._celery.send_task(
                name, args=args, queue=_MEMORY_QUEUE, task_id=task_id,
                connection=self._connection,
            )
            message = self._connection.default_channel._get(_MEMORY_QUEUE)
        message["properties"]["delivery_tag"] = DELIVERY_TAG
        message["properties"]["delivery_info"]["routing_key"] = QUEUE
        return json.dumps(message, separators=(",", ":")).encode()

    def close(self) -> None:
        self._connection.release()
        self._celery.close()
