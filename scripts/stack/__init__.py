"""One harness that starts a local stack: a private Redis, Celery workers and the API.

`make run` (scripts/run_local.py), the end-to-end tests and the benchmarks all start their
processes with it:

    redis = start_redis(aof_dir=None, log=tmp / "redis.log")
    env = stack_env(redis.url, DESCENT_KEY_PREFIX="bench")
    worker = start_worker(env, log=tmp / "worker.log").wait_online()
    api = start_api(env, log=tmp / "api.log").wait_ready()
    key = make_tenant(env, "bench")  # a tenant's API key, for Authorization: Bearer
    ...  # api.url, redis.url, worker.pool_pids()
    for process in (api, worker, redis):
        process.stop()

Each child runs in its own process group and gets SIGTERM from the kernel if the launcher
dies (Linux), so nothing outlives it.
"""

from __future__ import annotations

import os

from scripts.stack.process import (
    ROOT,
    Child,
    StackError,
    accepts_connections,
    free_port,
    wait_for,
)
from scripts.stack.redis_server import RedisServer, redis_server_binary, start_redis
from scripts.stack.services import Api, Worker, start_api, start_worker


def stack_env(redis_url: str, **settings: str) -> dict[str, str]:
    """This process's environment for a child of the stack, on `redis_url`, with
    `settings` (DESCENT_* variables) on top."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
        **settings,
    }


def bearer(api_key: str) -> dict[str, str]:
    """The headers of a request that speaks for the key's tenant."""
    return {"Authorization": f"Bearer {api_key}"}


def make_tenant(env: dict[str, str], name: str, **quotas: int | float) -> str:
    """Make a tenant (with `quotas` of its own) on the stack's Redis and key prefix, as
    `python -m app.admin create-tenant` does, and return its API key."""
    from app.settings import Settings
    from app.store.tenants import QuotaChanges, TenantStore

    settings = Settings(
        redis_url=env["REDIS_URL"], key_prefix=env.get("DESCENT_KEY_PREFIX") or "descent"
    )
    tenants = TenantStore.from_settings(settings)
    try:
        _, api_key, _ = tenants.create_tenant(name, QuotaChanges.model_validate(quotas))
    finally:
        tenants.close()
    return api_key


__all__ = [
    "ROOT",
    "Api",
    "Child",
    "RedisServer",
    "StackError",
    "Worker",
    "accepts_connections",
    "bearer",
    "free_port",
    "make_tenant",
    "redis_server_binary",
    "stack_env",
    "start_api",
    "start_redis",
    "start_worker",
    "wait_for",
]
