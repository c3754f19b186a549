"""Shared fixtures: a private redis-server for the session and a JobStore per test."""

from __future__ import annotations

import os

# One BLAS thread, as the workers run: on a small machine OpenBLAS's threads make the
# trainer's small products many times slower. Set before anything imports NumPy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import uuid
from collections.abc import Iterator

import pytest  # noqa: E402
import redis  # noqa: E402

from app.store.leases import LeaseHolder  # noqa: E402
from app.store.reaper import Reaper  # noqa: E402
from scripts.stack import RedisServer, start_redis  # noqa: E402
from tests.roles import AllRoles  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throw-away redis-server on a free port that keeps nothing on disk, stopped when
    the session ends (and killed by the kernel if pytest dies)."""
    server = start_redis(log=tmp_path_factory.mktemp("redis") / "redis.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests share the server but never each other's keys."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> AllRoles:
    return AllRoles(redis_client, prefix=key_prefix)


@pytest.fixture
def leases(redis_client: redis.Redis, key_prefix: str) -> LeaseHolder:
    """The worker's role on the same Redis and prefix as `store`."""
    return LeaseHolder(redis_client, prefix=key_prefix)


@pytest.fixture
def reaper(redis_client: redis.Redis, key_prefix: str) -> Reaper:
    return Reaper(redis_client, prefix=key_prefix)
