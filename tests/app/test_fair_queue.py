"""The fair queue and the quotas, in the store: slots, the waiting line, and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from app.store.records import IdempotencyConflict, JobNotFound, QuotaExceeded
from app.store.tenants import QuotaChanges, TenantStore
from tests.roles import AllRoles

SPEC: dict[str, Any] = {"dataset": "blobs", "epochs": 2}
A, B = "tnt_a", "tnt_b"


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> AllRoles:
    return AllRoles(redis_client, prefix=key_prefix, max_running_jobs=2)


def sent(store: AllRoles) -> list[str]:
    """Job ids in the broker queue, oldest message first (kombu pops from the right)."""
    raw = store.client.lrange(store.keys.queue, 0, -1)
    return [json.loads(m)["headers"]["id"] for m in reversed(raw)]


def submit(store: AllRoles, tenant: str, **quotas: int) -> str:
    return str(store.create_job(SPEC, tenant=tenant, name=None, quotas=quotas)[0]["id"])


def work(store: AllRoles, job_id: str) -> None:
    """A worker takes the job's message and starts it."""
    assert store.acquire_lease(job_id, "w" * 8, 60)
    assert store.start_attempt(job_id, "w" * 8) == 1


def test_a_tenants_jobs_beyond_its_slots_wait_without_a_message(store: AllRoles) -> None:
    ids = [submit(store, A) for _ in range(5)]

    assert sent(store) == ids[:2]
    waiting = store.client.zrange(store.keys.tenant_waiting(A), 0, -1)
    assert [w.decode() for w in waiting] == ids[2:]
    assert all(store.get_job(i)["status"] == "queued" for i in ids)


def test_the_end_of_a_job_sends_its_tenants_oldest_waiting_job(store: AllRoles) -> None:
    ids = [submit(store, A) for _ in range(4)]
    work(store, ids[0])

    assert store.finish(ids[0], "succeeded", token="w" * 8)

    assert sent(store) == ids[:3]
    store.request_cancel(ids[1], tenant=A)  # a dispatched job cancelled before it ran
    assert sent(store) == ids
    assert store.client.zcard(store.keys.tenant_waiting(A)) == 0
    assert store.client.sismember(store.keys.tenants_waiting, A) == 0


def test_another_tenants_job_does_not_wait_behind_a_backlog(store: AllRoles) -> None:
    a_ids = [submit(store, A) for _ in range(6)]
    b_id = submit(store, B)

    assert sent(store) == [*a_ids[:2], b_id]


def test_a_cancelled_waiting_job_leaves_the_line(store: AllRoles) -> None:
    ids = [submit(store, A) for _ in range(4)]
    store.request_cancel(ids[2], tenant=A)
    work(store, ids[0])
    store.finish(ids[0], "failed", token="w" * 8)

    assert sent(store) == [ids[0], ids[1], ids[3]]
    assert store.get_job(ids[2])["status"] == "cancelled"


def test_a_requeued_job_keeps_its_slot(store: AllRoles) -> None:
    ids = [submit(store, A) for _ in range(3)]
    work(store, ids[0])
    store.release_lease(ids[0], "w" * 8)  # its worker died

    assert store.reap(ids[0], max_attempts=3) == "queued"

    assert sent(store) == [ids[0], ids[1], ids[0]]  # a second message, no new dispatch
    assert store.client.scard(store.keys.tenant_slots(A)) == 2


def test_the_repair_frees_slots_of_ended_jobs_and_fills_them(store: AllRoles) -> None:
    ids = [submit(store, A) for _ in range(3)]
    # As if a crash had left an ended job holding a slot (the ending script prevents it).
    store.client.hset(store.keys.job(ids[0]).job, "status", "succeeded")

    assert store.repair_fair_queue() == 1

    assert sent(store) == ids
    assert store.client.sismember(store.keys.tenants_waiting, A) == 0


def test_raising_max_running_jobs_sends_waiting_jobs_at_once(
    store: AllRoles, redis_client: redis.Redis, key_prefix: str
) -> None:
    tenants = TenantStore(redis_client, prefix=key_prefix, max_running_jobs=2)
    tenant, _, _ = tenants.create_tenant("alice")
    ids = [submit(store, tenant.id) for _ in range(5)]

    tenants.set_quotas(tenant.id, QuotaChanges(max_running_jobs=4))

    assert sent(store) == ids[:4]
    tenants.set_quotas(tenant.id, QuotaChanges(max_running_jobs=None))  # back to 2
    work(store, ids[0])
    store.finish(ids[0], "succeeded", token="w" * 8)
    assert sent(store) == ids[:4]  # 3 still hold slots, over the default of 2


def test_max_active_jobs_refuses_with_the_limit_and_the_count(store: AllRoles) -> None:
    for _ in range(3):
        submit(store, A, max_active_jobs=3)

    with pytest.raises(QuotaExceeded) as refused:
        submit(store, A, max_active_jobs=3)

    assert (refused.value.quota, refused.value.limit, refused.value.count) == (
        "max_active_jobs", 3, 3)
    assert refused.value.retry_after >= 1
    assert submit(store, B, max_active_jobs=3)  # another tenant is not counted
    assert len(store.list_jobs(tenant=A)[0]) == 3


def test_submissions_per_minute_refuses_with_when_to_retry(store: AllRoles) -> None:
    for _ in range(4):
        submit(store, A, submissions_per_minute=4)

    with pytest.raises(QuotaExceeded) as refused:
        submit(store, A, submissions_per_minute=4)

    assert refused.value.quota == "submissions_per_minute"
    assert (refused.value.limit, refused.value.count) == (4, 4)
    assert 55 <= refused.value.retry_after <= 60


def test_an_idempotent_replay_is_not_a_new_submission(store: AllRoles) -> None:
    quotas = {"submissions_per_minute": 1}
    first, _ = store.create_job(SPEC, tenant=A, name=None, idempotency_key="k", quotas=quotas)
    again, created = store.create_job(SPEC, tenant=A, name=None, idempotency_key="k",
                                      quotas=quotas)

    assert not created and again["id"] == first["id"]


def test_idempotency_keys_are_per_tenant(store: AllRoles) -> None:
    a_job, _ = store.create_job(SPEC, tenant=A, name=None, idempotency_key="k")
    b_job, created = store.create_job({**SPEC, "seed": 1}, tenant=B, name=None,
                                      idempotency_key="k")

    assert created and b_job["id"] != a_job["id"]
    with pytest.raises(IdempotencyConflict):
        store.create_job({**SPEC, "seed": 1}, tenant=A, name=None, idempotency_key="k")


def test_another_tenants_job_is_unknown_to_the_store(store: AllRoles) -> None:
    job_id = submit(store, A)

    assert store.get_job(job_id, tenant=B) is None
    assert store.read_curve(job_id, tenant=B) is None
    assert store.get_metrics(job_id, tenant=B) is None
    assert store.load_weights(job_id, tenant=B) is None
    with pytest.raises(JobNotFound):
        store.request_cancel(job_id, tenant=B)
    assert store.get_job(job_id)["status"] == "queued"  # and untouched
    assert store.list_jobs(tenant=B) == ([], None)
    assert [j["id"] for j in store.list_jobs(tenant=A)[0]] == [job_id]
