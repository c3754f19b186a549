"""Which workers are alive: each worker's heartbeat in a Redis sorted set."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from app.keys import KeyLayout
from app.records import text


class WorkerRegistry:
    """Workers call `beat`; the API's readiness asks `alive`."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._keys = KeyLayout(prefix)
        self._clock = clock

    def beat(self, worker: str) -> None:
        self._redis.zadd(self._keys.workers, {worker: self._clock()})

    def leave(self, worker: str) -> None:
        self._redis.zrem(self._keys.workers, worker)

    def alive(self, within_seconds: float) -> list[str]:
        """Workers seen in the last `within_seconds`; older entries are dropped."""
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._keys.workers, "-inf", now - 10 * within_seconds)
        pipe.zrangebyscore(self._keys.workers, now - within_seconds, "+inf")
        _, members = pipe.execute()
        return [text(member) for member in members]

    def try_lock_reaper(self, owner: str, ttl_seconds: float) -> bool:
        """Let one worker at a time run the reaper, for at most ttl_seconds."""
        return bool(
            self._redis.set(self._keys.reaper_lock, owner, nx=True, px=int(ttl_seconds * 1000))
        )
