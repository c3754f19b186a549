"""What every role of the job store shares: the Redis client, the key layout, the clock,
and the one terminal transition of a job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import redis
from redis.asyncio import BlockingConnectionPool as AsyncBlockingPool
from redis.asyncio import Redis as AsyncRedis

from app.settings import DEFAULT_JOB_TTL_SECONDS, DEFAULT_MAX_RUNNING_JOBS
from app.store import lua
from app.store.keys import TERMINAL_STATUSES, JobKeys, KeyLayout, check_status, is_job_id
from app.store.records import (
    JobNotFound,
    check_token,
    dumps,
    iso,
    utc_now,
    visible_job,
)

if TYPE_CHECKING:
    from app.settings import Settings

logger = logging.getLogger(__name__)

# The Redis errors that mean "the store cannot be reached now", as opposed to a bug.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


# Bytes in and out, bounded waits, and a command retried (with the client's backoff) on a
# new connection when its pooled one turns out dead, as after a Redis restart: redis-py's
# asyncio client does not do that by default, and answered the first request after a
# restart with a 503.
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
    "health_check_interval": 30,
    "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
}


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for the job store."""
    return redis.Redis.from_url(settings.redis_url, **CLIENT_OPTIONS)


# Per API process, more than the requests one process serves at once: past that, each
# request waits on the pool's Condition (wake-ups and an unfair order) for every command.
ASYNC_CONNECTIONS = 256
ASYNC_CONNECTION_WAIT = 10.0  # seconds a request waits for a free one at most (then a 503)


def connect_async(settings: Settings) -> AsyncRedis:
    """An asyncio Redis client, for what the API awaits on its event loop. Its pool waits
    for a free connection: redis-py's default pool refuses at once past 100 connections, and
    200 clients following at once made 503s of their requests."""
    pool = AsyncBlockingPool.from_url(
        settings.redis_url, max_connections=ASYNC_CONNECTIONS, timeout=ASYNC_CONNECTION_WAIT,
        **CLIENT_OPTIONS,
    )
    return AsyncRedis(connection_pool=pool)


class StoreBase:
    """A role's view of the store; JobStore (the API), LeaseHolder (a worker running a job)
    and Reaper (a worker cleaning up after dead ones) build on it."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "descent",
        job_ttl: int = DEFAULT_JOB_TTL_SECONDS,
        max_running_jobs: int = DEFAULT_MAX_RUNNING_JOBS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must use decode_responses=False, got True")
        if not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        if job_ttl <= 0:
            raise ValueError(f"job_ttl must be > 0 seconds, got {job_ttl}")
        self._redis: Any = client  # redis-py's return types are unions with Awaitable
        self.keys = KeyLayout(prefix)
        self.job_ttl = int(job_ttl)
        if max_running_jobs < 1:
            raise ValueError(f"max_running_jobs must be >= 1, got {max_running_jobs}")
        # A tenant's max_running_jobs unless the operator set its own (the fair queue).
        self.max_running_jobs = int(max_running_jobs)
        self._clock = clock
        self._finish = self._script(lua.FINISH)
        self._dispatch = self._script(lua.DISPATCH)
        self._register()

    def _register(self) -> None:
        """Register the role's own Lua scripts (with self._script); none here."""

    def _script(self, source: str) -> Any:
        """A Lua script of app.store.lua, registered on this role's client."""
        return self._redis.register_script(source)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis | None = None) -> Self:
        """This role on `client` (a new connection pool when None) with the settings' keys."""
        return cls(
            client if client is not None else connect(settings),
            prefix=settings.key_prefix,
            job_ttl=settings.job_ttl_seconds,
            max_running_jobs=settings.quota_max_running_jobs,
        )

    @property
    def client(self) -> redis.Redis:
        client: redis.Redis = self._redis
        return client

    def close(self) -> None:
        self._redis.close()

    def _now(self) -> str:
        return iso(self._clock())

    def _job_keys(self, job_id: str) -> JobKeys:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        return self.keys.job(job_id)

    def get_job(self, job_id: str, *, tenant: str | None = None) -> dict[str, Any] | None:
        """The public Job, or None for an unknown (or expired) id, or (given `tenant`)
        another tenant's job: to a tenant, those are the same."""
        if not is_job_id(job_id):
            return None
        return visible_job(self._redis.hgetall(self.keys.job(job_id).job), tenant)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        token: str | None = None,
        error: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        warnings: list[str] | None = None,
        weights: bytes | None = None,
    ) -> bool:
        """Move a queued or running job to a terminal status, once; return whether it moved.

        With a token, only while the lease is that token's or absent. Stores error,
        metrics, (merged) warnings and the trained weights, drops the lease and
        checkpoint, puts the job TTL on every key of the job, and gives the job's slot to
        its tenant's oldest waiting job.
        """
        if check_status(status) not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(TERMINAL_STATUSES)}, got {status!r}")
        if error is not None and not {"code", "message"} <= set(error):
            raise ValueError(f"error must have 'code' and 'message', got {dict(error)!r}")
        args: list[str | int | bytes] = [
            status,
            "" if token is None else check_token(token),
            self._now(),
            self.job_ttl,
            "" if error is None else dumps(error),
            "" if metrics is None else dumps(metrics),
            dumps(warnings) if warnings else "",
            weights or b"",
            self.max_running_jobs,
        ]
        job_keys = self._job_keys(job_id)
        moved = bool(self._finish(keys=[*job_keys.all(), job_keys.weights], args=args))
        if moved:
            logger.info("job %s finished: %s", job_id, status)
        return moved

    def dispatch_waiting(self, tenant_id: str) -> int:
        """Fill one tenant's free slots from its waiting line; return the slots held."""
        return int(self._dispatch(
            keys=[self.keys.queue],
            args=[self.keys.prefix, tenant_id, self.max_running_jobs, self._now()],
        ))
