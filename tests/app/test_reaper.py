"""Reaper: each transition re-checks its condition atomically; expired jobs leave the indexes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from tests.roles import TENANT, AllRoles

SPEC: dict[str, Any] = {"dataset": "blobs", "epochs": 4}


def running_job(store: AllRoles, token: str) -> str:
    job_id = str(store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"])
    assert store.acquire_lease(job_id, token, 60)
    assert store.start_attempt(job_id, token) == 1
    return job_id


def test_running_jobs_without_a_lease_are_the_candidates(store: AllRoles) -> None:
    alive = running_job(store, "worker-a")
    dead = running_job(store, "worker-b")
    store.create_job(SPEC, tenant=TENANT, name=None)  # queued: no worker yet, not a candidate
    finished = running_job(store, "worker-c")
    store.finish(finished, "succeeded", token="worker-c")
    assert store.running_without_lease() == []
    assert store.release_lease(dead, "worker-b")
    assert store.running_without_lease() == [dead]
    assert alive not in store.running_without_lease()


def test_a_lost_job_goes_back_to_the_queue_keeping_its_attempts(store: AllRoles) -> None:
    job_id = running_job(store, "worker-a")
    store.release_lease(job_id, "worker-a")

    assert store.reap(job_id, max_attempts=3) == "queued"

    job = store.get_job(job_id)
    assert job is not None and job["status"] == "queued" and job["attempts"] == 1
    assert store.list_jobs(tenant=TENANT, status="queued")[0][0]["id"] == job_id
    assert store.list_jobs(tenant=TENANT, status="running")[0] == []


def test_the_reaper_leaves_alone_a_job_whose_lease_was_taken_meanwhile(
    store: AllRoles,
) -> None:
    job_id = running_job(store, "worker-a")
    store.release_lease(job_id, "worker-a")
    assert store.running_without_lease() == [job_id]  # the reaper looks...
    assert store.acquire_lease(job_id, "redelivered", 60)  # ...a redelivery starts...

    assert store.reap(job_id, max_attempts=1) is None  # ...and the reaper acts on nothing

    job = store.get_job(job_id)
    assert job is not None and job["status"] == "running" and job["error"] is None


def test_a_lost_job_that_used_its_attempts_fails_as_worker_lost(store: AllRoles) -> None:
    job_id = running_job(store, "worker-a")
    store.release_lease(job_id, "worker-a")

    assert store.reap(job_id, max_attempts=1) == "failed"

    job = store.get_job(job_id)
    assert job is not None and job["status"] == "failed"
    assert job["error"]["code"] == "worker_lost" and "1 attempts" in job["error"]["message"]
    assert store.reap(job_id, max_attempts=1) is None  # terminal: never again


def test_a_lost_job_that_asked_to_stop_ends_cancelled(store: AllRoles) -> None:
    job_id = running_job(store, "worker-a")
    store.request_cancel(job_id, tenant=TENANT)
    store.release_lease(job_id, "worker-a")

    assert store.reap(job_id, max_attempts=3) == "cancelled"
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "cancelled"


def test_queued_jobs_without_a_message_are_resent_once_per_wait(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = AllRoles(redis_client, prefix=key_prefix, clock=lambda: now[0], max_running_jobs=5)
    old = store.create_job(SPEC, tenant=TENANT, name="old")[0]["id"]
    now[0] += timedelta(seconds=100)
    started = store.create_job(SPEC, tenant=TENANT, name="started")[0]["id"]
    assert store.acquire_lease(started, "w" * 32, 60)
    store.start_attempt(started, "w" * 32)
    now[0] += timedelta(seconds=100)
    fresh = store.create_job(SPEC, tenant=TENANT, name="fresh")[0]["id"]
    now[0] += timedelta(seconds=50)

    assert store.resend_lost_messages(120) == [old]
    assert store.resend_lost_messages(120) == []  # just re-sent: its wait starts again
    assert store.resend_lost_messages(10) == [fresh]
    now[0] += timedelta(seconds=200)
    assert sorted(store.resend_lost_messages(100)) == sorted([old, fresh])
    # Each send pushed a message of its own: a delivery tag kombu has not seen.
    tags = [json.loads(raw)["properties"]["delivery_tag"]
            for raw in redis_client.lrange(store.keys.queue, 0, -1)]
    assert sorted(tags) == sorted(
        [f"{old}.1", f"{old}.2", f"{old}.3", f"{started}.1", f"{fresh}.1", f"{fresh}.2",
         f"{fresh}.3"]
    )


def test_a_job_waiting_for_its_tenants_slot_is_never_resent(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = AllRoles(redis_client, prefix=key_prefix, clock=lambda: now[0], max_running_jobs=1)
    first = store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"]
    waiting = store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"]
    now[0] += timedelta(seconds=1000)

    assert store.resend_lost_messages(10) == [first]
    assert redis_client.zrange(store.keys.tenant_waiting(TENANT), 0, -1) == [waiting.encode()]


def test_expired_jobs_leave_every_index_however_often_the_reaper_prunes(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    store = AllRoles(redis_client, prefix=key_prefix, job_ttl=1)
    ended = []
    for status in ("succeeded", "failed", "cancelled") * 10:
        job_id = running_job(store, "w")
        store.finish(job_id, status, token="w")
        ended.append(job_id)
    kept = running_job(store, "w")
    waiting = store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"]

    # Pruning while the jobs expire (as the reaper does, every few seconds) must neither
    # drop a live job nor forget one that has not expired yet.
    dropped = 0
    deadline = time.monotonic() + 15
    while dropped < 30:
        assert time.monotonic() < deadline, f"only {dropped} of 30 expired jobs were pruned"
        dropped += store.prune_indexes()
        time.sleep(0.05)

    assert set(redis_client.zrange(store.keys.jobs, 0, -1)) == {kept.encode(), waiting.encode()}
    tenant_index = store.keys.tenant_jobs(TENANT)
    assert set(redis_client.zrange(tenant_index, 0, -1)) == {kept.encode(), waiting.encode()}
    for status in ("succeeded", "failed", "cancelled"):
        assert redis_client.zcard(store.keys.status_index(status)) == 0
    assert redis_client.zcard(store.keys.expiring) == 0
    assert not any(redis_client.exists(store.keys.job(job_id).job) for job_id in ended)
    assert store.prune_indexes() == 0
