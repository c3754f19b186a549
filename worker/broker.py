"""The worker's side of the Redis broker: acknowledgements that survive a Redis restart.

kombu 5.7's Redis transport misbehaves when a broker connection is lost while a task runs
(a Redis restart), and Descent's tasks run on through such outages (worker.outage):

- When the lost connection's channel closes, kombu re-publishes the messages it delivered
  but that are not acknowledged yet: the message of the job that is still running, which
  another process would then start again. (With two or more pool processes the restore
  itself crashes the worker: AttributeError in _connparams.) A job whose worker is really
  gone is the reaper's to re-queue: it knows, from the lease, whether the worker is alive.
- When the task ends, acknowledging its message through the closed channel raises
  AttributeError, which Celery treats as an unrecoverable error and shuts the worker down.
  The message stays in kombu's unacknowledged index instead; the broker's visibility
  timeout hands it out again much later, and a worker then finds the job ended (or, if
  the reaper re-queued it meanwhile, held by another worker's lease) and drops it.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    restore_at_shutdown = False

    def ack(self, delivery_tag: str) -> None:
        if self._lost(delivery_tag):
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._lost(delivery_tag):
            return
        super().reject(delivery_tag, requeue=requeue)

    def _lost(self, delivery_tag: str) -> bool:
        if not self.channel.closed:
            return False
        logger.info(
            "message %s came on a broker connection that was lost; it is left to the "
            "visibility timeout (its job has ended, so it will be dropped then)", delivery_tag
        )
        return True


def install() -> None:
    """Make the Redis transport's channels use QoS (call before the worker connects)."""
    kombu_redis.Channel.QoS = QoS
