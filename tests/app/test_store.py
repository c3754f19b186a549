"""JobStore, API side: create, idempotency, listing, cancel, finish, TTLs and curves."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.settings import Settings
from app.store.jobs import (
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFound,
    JobStore,
)
from tests.roles import TENANT

SPEC: dict[str, Any] = {"dataset": "blobs", "epochs": 4, "learning_rate": 0.1}
PROGRESS = {"epoch": 1, "epochs": 4, "iteration": 0, "iterations": 100, "fraction": 0.0,
            "eta_seconds": 5.0}


def running_job(store: JobStore, token: str = "worker-a") -> str:
    job, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    assert store.acquire_lease(job["id"], token, 60)
    assert store.start_attempt(job["id"], token) == 1
    return str(job["id"])


def write_losses(store: JobStore, job_id: str, first: int, losses: list[float],
                 token: str = "worker-a") -> None:
    store.record_iterations(job_id, token, first, np.array(losses), PROGRESS)


def wait_until_gone(client: redis.Redis, key: str) -> None:
    """Poll until Redis has expired `key` (it was given a 1 ms TTL)."""
    deadline = time.monotonic() + 5
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.005)


def test_create_then_get_round_trips_with_defaults(store: JobStore) -> None:
    job, created = store.create_job(SPEC, tenant=TENANT, name="first")
    assert created
    assert len(job["id"]) == 32
    assert store.get_job(job["id"]) == job
    assert job["name"] == "first"
    assert job["status"] == "queued"
    assert job["spec"] == SPEC
    assert job["created_at"].endswith("Z")
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["progress"] == {"epoch": 0, "epochs": 4, "iteration": 0, "iterations": None,
                               "fraction": 0.0, "eta_seconds": None}
    assert job["cancel_requested"] is False
    assert job["attempts"] == 0
    assert job["warnings"] == []
    assert job["error"] is None


def test_a_null_name_stays_null(store: JobStore) -> None:
    job, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    assert store.get_job(job["id"])["name"] is None  # type: ignore[index]


@pytest.mark.parametrize("job_id", ["0" * 32, "not-an-id", "a" * 32 + ":losses"])
def test_unknown_or_malformed_ids_read_as_none(store: JobStore, job_id: str) -> None:
    assert store.get_job(job_id) is None
    assert store.read_curve(job_id, tenant=TENANT) is None
    assert store.get_metrics(job_id, tenant=TENANT) is None


def test_same_idempotency_key_and_body_returns_the_first_job(store: JobStore) -> None:
    first, created = store.create_job(SPEC, tenant=TENANT, name="x", idempotency_key="key-1")
    again, created_again = store.create_job(
        dict(SPEC), tenant=TENANT, name="x", idempotency_key="key-1"
    )
    assert created and not created_again
    assert again == first
    assert store.list_jobs(tenant=TENANT)[0] == [first]


@pytest.mark.parametrize(("spec", "name"), [({**SPEC, "epochs": 5}, "x"), (SPEC, "y")])
def test_same_idempotency_key_with_another_body_conflicts(
    store: JobStore, spec: dict[str, Any], name: str
) -> None:
    store.create_job(SPEC, tenant=TENANT, name="x", idempotency_key="key-1")
    with pytest.raises(IdempotencyConflict, match="key-1"):
        store.create_job(spec, tenant=TENANT, name=name, idempotency_key="key-1")
    assert len(store.list_jobs(tenant=TENANT)[0]) == 1


def test_idempotency_key_of_an_expired_job_creates_a_new_one(
    store: JobStore, redis_client: redis.Redis
) -> None:
    first, _ = store.create_job(SPEC, tenant=TENANT, name=None, idempotency_key="k")
    redis_client.delete(store.keys.job(first["id"]).job)
    second, created = store.create_job(SPEC, tenant=TENANT, name=None, idempotency_key="k")
    assert created
    assert second["id"] != first["id"]
    third, _ = store.create_job(SPEC, tenant=TENANT, name=None, idempotency_key="k")
    assert third["id"] == second["id"]


def test_concurrent_creates_with_one_key_make_one_job(store: JobStore) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[dict[str, Any], bool]] = []

    def submit() -> None:
        barrier.wait()
        results.append(store.create_job(SPEC, tenant=TENANT, name=None, idempotency_key="race"))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len({job["id"] for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.list_jobs(tenant=TENANT)[0]) == 1


def test_list_is_newest_first(store: JobStore) -> None:
    ids = [store.create_job(SPEC, tenant=TENANT, name=f"job {i}")[0]["id"] for i in range(4)]
    jobs, cursor = store.list_jobs(tenant=TENANT)
    assert [job["id"] for job in jobs] == ids[::-1]
    assert cursor is None


def test_cursor_pages_through_seven_jobs_three_at_a_time(store: JobStore) -> None:
    ids = [store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"] for _ in range(7)]
    seen: list[str] = []
    pages: list[int] = []
    cursor: str | None = None
    while True:
        jobs, cursor = store.list_jobs(tenant=TENANT, limit=3, cursor=cursor)
        pages.append(len(jobs))
        seen += [job["id"] for job in jobs]
        if cursor is None:
            break
    assert pages == [3, 3, 1]
    assert seen == ids[::-1]


def test_a_full_last_page_has_no_next_cursor(store: JobStore) -> None:
    for _ in range(6):
        store.create_job(SPEC, tenant=TENANT, name=None)
    first, cursor = store.list_jobs(tenant=TENANT, limit=3)
    second, last_cursor = store.list_jobs(tenant=TENANT, limit=3, cursor=cursor)
    assert len(first) == len(second) == 3
    assert last_cursor is None


def test_status_filter_follows_transitions(store: JobStore) -> None:
    queued, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    running = running_job(store)
    cancelled, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    store.request_cancel(cancelled["id"], tenant=TENANT)
    def listed(status: str) -> list[str]:
        return [job["id"] for job in store.list_jobs(tenant=TENANT, status=status)[0]]

    assert listed("queued") == [queued["id"]]
    assert listed("running") == [running]
    assert listed("cancelled") == [cancelled["id"]]
    assert store.list_jobs(tenant=TENANT, status="succeeded")[0] == []


def test_expired_jobs_are_skipped_and_dropped_from_the_indexes(
    store: JobStore, redis_client: redis.Redis
) -> None:
    ids = [store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"] for _ in range(5)]
    for job_id in ids[1:4]:
        key = store.keys.job(job_id).job
        redis_client.pexpire(key, 1)
        wait_until_gone(redis_client, key)
    jobs, cursor = store.list_jobs(tenant=TENANT, limit=2)
    assert [job["id"] for job in jobs] == [ids[4], ids[0]]
    assert cursor is None
    assert redis_client.zcard(store.keys.jobs) == 2
    assert redis_client.zscore(store.keys.status_index("queued"), ids[2]) is None


@pytest.mark.parametrize("cursor", ["abc", "-1", "0", "", "1.5"])
def test_a_bad_cursor_is_refused_with_its_value(store: JobStore, cursor: str) -> None:
    with pytest.raises(ValueError, match=f"cursor.*got {cursor!r}"):
        store.list_jobs(tenant=TENANT, cursor=cursor)


def test_an_unknown_status_filter_is_refused(store: JobStore) -> None:
    with pytest.raises(ValueError, match="'done'"):
        store.list_jobs(tenant=TENANT, status="done")


def test_cancelling_a_queued_job_ends_it_at_once(store: JobStore) -> None:
    job, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    cancelled = store.request_cancel(job["id"], tenant=TENANT)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested"] is True
    assert cancelled["finished_at"] is not None
    assert store.client.ttl(store.keys.job(job["id"]).job) > 0


def test_cancelling_a_running_job_sets_the_flag_the_worker_reads(store: JobStore) -> None:
    job_id = running_job(store)
    job = store.request_cancel(job_id, tenant=TENANT)
    assert job["status"] == "running"
    assert job["cancel_requested"] is True
    assert store.record_iterations(job_id, "worker-a", 1, np.array([1.0]), PROGRESS) is True


def test_cancelling_twice_changes_nothing(store: JobStore) -> None:
    job, _ = store.create_job(SPEC, tenant=TENANT, name=None)
    first = store.request_cancel(job["id"], tenant=TENANT)
    assert store.request_cancel(job["id"], tenant=TENANT) == first


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancelling_a_finished_job_raises_with_its_status(store: JobStore, status: str) -> None:
    job_id = running_job(store)
    assert store.finish(job_id, status, token="worker-a")
    with pytest.raises(JobAlreadyFinished, match=status) as caught:
        store.request_cancel(job_id, tenant=TENANT)
    assert caught.value.status == status
    assert store.get_job(job_id)["status"] == status  # type: ignore[index]


def test_cancelling_an_unknown_job_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match="f" * 32):
        store.request_cancel("f" * 32, tenant=TENANT)


def test_finish_happens_once(store: JobStore) -> None:
    job_id = running_job(store)
    error = {"code": "diverged", "message": "loss is nan at iteration 7"}
    assert store.finish(job_id, "failed", token="worker-a", error=error)
    before = store.get_job(job_id)
    assert store.finish(job_id, "succeeded", metrics={"test": {"accuracy": 1.0}}) is False
    assert store.get_job(job_id) == before
    assert before is not None and before["status"] == "failed" and before["error"] == error
    assert store.get_metrics(job_id, tenant=TENANT) is None


def test_finish_is_refused_while_another_worker_holds_the_lease(store: JobStore) -> None:
    job_id = running_job(store, token="worker-a")
    assert store.finish(job_id, "succeeded", token="worker-b") is False
    assert store.get_job(job_id)["status"] == "running"  # type: ignore[index]
    assert store.release_lease(job_id, "worker-a")
    assert store.finish(job_id, "failed", token="worker-b",
                        error={"code": "worker_lost", "message": "lease lapsed"})


def test_finish_stores_metrics_and_merges_warnings(store: JobStore) -> None:
    job_id = running_job(store)
    store.add_warning(job_id, "learning rate barely moves the loss")
    metrics = {"test": {"accuracy": 0.9, "loss": 0.3}, "best_epoch": 2}
    assert store.finish(job_id, "succeeded", token="worker-a", metrics=metrics,
                        warnings=["learning rate barely moves the loss", "train/test gap"])
    job = store.get_job(job_id)
    assert job is not None
    assert job["warnings"] == ["learning rate barely moves the loss", "train/test gap"]
    assert job["finished_at"] is not None and job["error"] is None
    assert store.get_metrics(job_id, tenant=TENANT) == metrics


@pytest.mark.parametrize("status", ["running", "queued", "done"])
def test_finish_only_accepts_a_terminal_status(store: JobStore, status: str) -> None:
    job_id = running_job(store)
    with pytest.raises(ValueError, match=repr(status)):
        store.finish(job_id, status)


def test_running_jobs_never_expire_and_finished_ones_do_on_every_key(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [1.0, 0.5])
    store.record_epoch(job_id, "worker-a", {"epoch": 1, "iteration": 2, "train_loss": 0.7})
    store.save_checkpoint(job_id, "worker-a", b"weights")
    keys = store.keys.job(job_id)
    for key in (keys.job, keys.losses, keys.epochs, keys.checkpoint):
        assert redis_client.ttl(key) == -1, key
    assert store.finish(job_id, "succeeded", token="worker-a", metrics={"epochs_run": 1},
                        weights=b"the model")
    for key in (keys.job, keys.losses, keys.epochs, keys.metrics, keys.weights):
        assert 0 < redis_client.ttl(key) <= store.job_ttl, key
    assert redis_client.exists(keys.lease, keys.checkpoint) == 0
    assert store.load_weights(job_id, tenant=TENANT) == b"the model"


def test_weights_come_only_with_the_transition_that_brings_them(store: JobStore) -> None:
    job_id = running_job(store)
    assert store.finish(job_id, "failed", token="worker-a",
                        error={"code": "diverged", "message": "loss nan"})
    assert store.load_weights(job_id, tenant=TENANT) is None
    # A late second finish (a redelivered task, say) changes nothing, weights included.
    assert not store.finish(job_id, "succeeded", metrics={"epochs_run": 1}, weights=b"late")
    assert store.load_weights(job_id, tenant=TENANT) is None
    assert store.load_weights("not-a-job-id", tenant=TENANT) is None


def test_read_curve_pages_with_since_and_next(store: JobStore) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [5.0, 4.0, 3.0])
    store.record_epoch(job_id, "worker-a", {"epoch": 2, "iteration": 3, "train_loss": 3.0})
    store.record_epoch(job_id, "worker-a", {"epoch": 1, "iteration": 2, "train_loss": 4.0})
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None
    assert curve["iterations"] == [1, 2, 3] and curve["loss"] == [5.0, 4.0, 3.0]
    assert curve["next"] == 3 and curve["total"] == 3 and curve["status"] == "running"
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2]
    write_losses(store, job_id, 4, [2.0, 1.0])
    newer = store.read_curve(job_id, tenant=TENANT, since=curve["next"])
    assert newer is not None
    assert newer["iterations"] == [4, 5] and newer["loss"] == [2.0, 1.0]
    assert newer["next"] == 5 and newer["total"] == 5
    nothing = store.read_curve(job_id, tenant=TENANT, since=5)
    assert nothing is not None
    assert nothing["iterations"] == [] and nothing["loss"] == []
    assert nothing["next"] == 5 and nothing["total"] == 5


def test_read_curve_beyond_the_end_answers_next_no_larger_than_total(store: JobStore) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [1.0, 2.0])
    curve = store.read_curve(job_id, tenant=TENANT, since=50)
    assert curve is not None
    assert (curve["iterations"], curve["next"], curve["total"]) == ([], 2, 2)


def test_epoch_rows_follow_the_cursor_so_a_poll_never_resends_one(store: JobStore) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [1.0, 2.0, 3.0, 4.0])
    for epoch in (1, 2):
        store.record_epoch(job_id, "worker-a", {"epoch": epoch, "iteration": 2 * epoch})

    def rows(since: int) -> list[int]:
        curve = store.read_curve(job_id, tenant=TENANT, since=since)
        assert curve is not None
        return [row["epoch"] for row in curve["epochs"]]

    assert rows(0) == [1, 2]
    assert rows(1) == [1, 2]
    assert rows(2) == [2]
    assert rows(4) == []
    assert rows(10**12) == []  # far past the end: no Redis error, nothing new


def test_read_curve_downsamples_keeping_the_first_new_and_last_points(store: JobStore) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [float(i) for i in range(1, 101)])
    curve = store.read_curve(job_id, tenant=TENANT, since=10, max_points=10)
    assert curve is not None
    assert len(curve["iterations"]) == 10
    assert curve["iterations"][0] == 11 and curve["iterations"][-1] == 100
    assert curve["loss"] == [float(i) for i in curve["iterations"]]
    assert curve["next"] == 100 and curve["total"] == 100
    one = store.read_curve(job_id, tenant=TENANT, max_points=1)
    assert one is not None
    assert (one["iterations"], one["loss"], one["next"]) == ([100], [100.0], 100)


def test_read_curve_widens_float32_and_nulls_a_diverged_loss(store: JobStore) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [0.1, float("nan")])
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None
    assert curve["loss"] == [float(np.float32(0.1)), None]


@pytest.mark.parametrize(("since", "max_points", "name"), [(-1, 10, "since"), (0, 0, "max_points")])
def test_read_curve_refuses_bad_arguments(
    store: JobStore, since: int, max_points: int, name: str
) -> None:
    job_id = running_job(store)
    with pytest.raises(ValueError, match=name):
        store.read_curve(job_id, tenant=TENANT, since=since, max_points=max_points)


def test_a_100k_point_curve_is_400_kb_and_polls_read_only_new_points(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = running_job(store)
    losses = np.linspace(2.0, 0.1, 100_000)
    for start in range(0, 100_000, 10_000):
        write_losses(store, job_id, start + 1, list(losses[start:start + 10_000]))
    assert redis_client.strlen(store.keys.job(job_id).losses) == 400_000
    tail = store.read_curve(job_id, tenant=TENANT, since=99_990, max_points=100_000)
    assert tail is not None
    assert tail["iterations"] == list(range(99_991, 100_001))
    assert tail["loss"] == [float(x) for x in losses[99_990:].astype(np.float32)]
    assert tail["total"] == 100_000 and tail["next"] == 100_000
    full = store.read_curve(job_id, tenant=TENANT, max_points=1000)
    assert full is not None
    assert len(full["loss"]) == 1000 and full["iterations"][-1] == 100_000


def test_ping_reports_reachability(store: JobStore) -> None:
    assert store.ping() is True
    closed = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    assert JobStore(closed, prefix="unused").ping() is False


def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        JobStore(client)


def test_from_settings_uses_the_prefix_and_ttls(redis_url: str, key_prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, job_ttl_seconds=60,
                        idempotency_ttl_seconds=30)
    store = JobStore.from_settings(settings)
    try:
        job, _ = store.create_job(SPEC, tenant=TENANT, name=None, idempotency_key="k")
        assert store.client.exists(f"{key_prefix}:job:{job['id']}") == 1
        assert 0 < store.client.ttl(f"{key_prefix}:idem:{TENANT}:k") <= 30
        assert store.job_ttl == 60
    finally:
        store.close()
