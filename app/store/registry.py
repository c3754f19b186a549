"""Which workers are alive: each worker's heartbeat in a Redis sorted set."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import redis

from app.store.keys import KeyLayout
from app.store.records import text

FORGET_AFTER_SECONDS = 600.0  # a worker silent this long is dropped from the set


class WorkerRegistry:
    """Workers call `beat`; the API's readiness asks `alive`."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._keys = KeyLayout(prefix)
        self._clock = clock

    def beat(self, worker: str) -> None:
        """Say `worker` is alive, and drop workers silent for over FORGET_AFTER_SECONDS
        (here, on the workers' own write, so that the API's readiness probe only reads)."""
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._keys.workers, {worker: now})
        pipe.zremrangebyscore(self._keys.workers, "-inf", now - FORGET_AFTER_SECONDS)
        pipe.execute()

    def leave(self, worker: str) -> None:
        self._redis.zrem(self._keys.workers, worker)

    def alive(self, within_seconds: float) -> list[str]:
        """Workers seen in the last `within_seconds`. Reads only."""
        since = self._clock() - within_seconds
        members = cast(list[bytes], self._redis.zrangebyscore(self._keys.workers, since, "+inf"))
        return [text(member) for member in members]

    def try_lock_reaper(self, owner: str, ttl_seconds: float) -> bool:
        """Let one worker at a time run the reaper, for at most ttl_seconds."""
        return bool(
            self._redis.set(self._keys.reaper_lock, owner, nx=True, px=int(ttl_seconds * 1000))
        )
