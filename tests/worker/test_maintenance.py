"""The reaper's pass: running jobs are left alone right after an outage or a restart."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.settings import Settings
from app.store.reaper import Reaper
from tests.roles import TENANT, AllRoles
from worker.maintenance import reap_once, redis_restarted_lately

SPEC: dict[str, Any] = {"dataset": "blobs", "epochs": 2}


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=key_prefix, lease_seconds=0.5,
                    heartbeat_seconds=0.1)


def orphan(store: AllRoles) -> str:
    """A running job whose worker's lease has lapsed."""
    job_id = str(store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"])
    assert store.acquire_lease(job_id, "gone", 60)
    store.start_attempt(job_id, "gone")
    store.release_lease(job_id, "gone")
    return job_id


class LongUp(AllRoles):
    def redis_uptime(self) -> float:
        return 10.0**6  # up for days: no restart to wait for


def test_right_after_an_outage_running_jobs_are_left_to_their_workers(
    redis_client: redis.Redis, key_prefix: str, settings: Settings
) -> None:
    store = LongUp(redis_client, prefix=key_prefix)
    job_id = orphan(store)

    assert reap_once(store, settings, after_outage=True) == []
    assert store.get_job(job_id)["status"] == "running"

    assert reap_once(store, settings) == [job_id]
    assert store.get_job(job_id)["status"] == "queued"


class Restarted(AllRoles):
    def redis_uptime(self) -> float:
        return 0.1  # Redis came back a moment ago


class Secretive(AllRoles):
    def redis_uptime(self) -> float:
        raise redis.ResponseError("unknown command 'INFO'")  # a proxy that hides it


def test_a_redis_that_just_restarted_gives_workers_their_grace(
    redis_client: redis.Redis, key_prefix: str, settings: Settings
) -> None:
    store = Restarted(redis_client, prefix=key_prefix)
    job_id = orphan(store)

    assert redis_restarted_lately(store, settings)
    assert reap_once(store, settings) == []
    assert store.get_job(job_id)["status"] == "running"


def test_a_redis_that_hides_its_uptime_is_reaped_as_usual(
    redis_client: redis.Redis, key_prefix: str, settings: Settings
) -> None:
    store: Reaper = Secretive(redis_client, prefix=key_prefix)

    assert not redis_restarted_lately(store, settings)
