"""JobStore, worker side: leases, attempts and the writes the lease fences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import redis

from app.store.jobs import JobNotFound, JobStore, LeaseLost
from tests.roles import TENANT, AllRoles

SPEC: dict[str, Any] = {"dataset": "blobs", "epochs": 3}
PROGRESS = {"epoch": 1, "epochs": 3, "iteration": 4, "iterations": 30, "fraction": 0.13,
            "eta_seconds": 2.5}


def queued(store: JobStore) -> str:
    return str(store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"])


def running(store: JobStore, token: str = "w1") -> str:
    job_id = queued(store)
    assert store.acquire_lease(job_id, token, 60)
    assert store.start_attempt(job_id, token) == 1
    return job_id


def curve_of(store: JobStore, job_id: str) -> list[float | None]:
    curve = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert curve is not None
    return list(curve["loss"])


class StepClock:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.ticks: Iterator[int] = iter(range(10**6))

    def __call__(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=next(self.ticks))


def test_a_lease_has_one_holder(store: JobStore) -> None:
    job_id = queued(store)
    assert store.acquire_lease(job_id, "w1", 60)
    assert store.acquire_lease(job_id, "w2", 60) is False
    assert store.acquire_lease(job_id, "w1", 60)  # ours already: extended
    assert store.lease_holder(job_id) == "w1"


def test_no_lease_on_a_job_that_does_not_exist(store: JobStore) -> None:
    assert store.acquire_lease("e" * 32, "w1", 60) is False
    assert store.lease_holder("e" * 32) is None
    with pytest.raises(JobNotFound):
        store.acquire_lease("bad id", "w1", 60)


@pytest.mark.parametrize(("token", "ttl", "name"), [("", 10, "token"), ("w1", 0, "ttl_seconds")])
def test_lease_arguments_are_checked(store: JobStore, token: str, ttl: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        store.acquire_lease(queued(store), token, ttl)


def test_only_the_holder_renews_and_renewing_records_a_heartbeat(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = queued(store)
    keys = store.keys.job(job_id)
    assert store.acquire_lease(job_id, "w1", 1)
    assert store.renew_lease(job_id, "w2", 120) == 0
    assert redis_client.pttl(keys.lease) <= 1000
    assert store.renew_lease(job_id, "w1", 120)
    assert redis_client.pttl(keys.lease) > 1000
    assert redis_client.hget(keys.job, "heartbeat_at") not in (None, b"")


def test_only_the_holder_releases(store: JobStore) -> None:
    job_id = queued(store)
    store.acquire_lease(job_id, "w1", 60)
    assert store.release_lease(job_id, "w2") is False
    assert store.lease_holder(job_id) == "w1"
    assert store.release_lease(job_id, "w1")
    assert store.lease_holder(job_id) is None


def test_start_attempt_counts_attempts_and_keeps_the_first_start_time(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    store = AllRoles(redis_client, prefix=key_prefix, clock=StepClock())
    job_id = queued(store)
    store.acquire_lease(job_id, "w1", 60)
    assert store.start_attempt(job_id, "w1") == 1
    first = store.get_job(job_id)
    assert first is not None and first["status"] == "running"
    store.release_lease(job_id, "w1")  # the first worker died; a redelivery takes over
    store.acquire_lease(job_id, "w2", 60)
    assert store.start_attempt(job_id, "w2") == 2
    second = store.get_job(job_id)
    assert second is not None
    assert second["attempts"] == 2
    assert second["started_at"] == first["started_at"] == "2025-01-01T00:00:01.000Z"
    assert [job["id"] for job in store.list_jobs(tenant=TENANT, status="running")[0]] == [job_id]
    assert store.list_jobs(tenant=TENANT, status="queued")[0] == []


def test_start_attempt_never_revives_a_terminal_job(store: JobStore) -> None:
    job_id = queued(store)
    store.request_cancel(job_id, tenant=TENANT)
    assert store.acquire_lease(job_id, "w1", 60)
    assert store.start_attempt(job_id, "w1") is None
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "cancelled" and job["attempts"] == 0
    assert store.start_attempt("d" * 32, "w1") is None


def test_start_attempt_needs_the_lease(store: JobStore) -> None:
    job_id = queued(store)
    store.acquire_lease(job_id, "w1", 60)
    with pytest.raises(LeaseLost, match="w2"):
        store.start_attempt(job_id, "w2")
    assert store.get_job(job_id)["status"] == "queued"  # type: ignore[index]


def test_iterations_land_at_their_exact_byte_offsets(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = running(store)
    assert store.record_iterations(job_id, "w1", 1, np.array([4.0, 3.0]), PROGRESS) is False
    store.record_iterations(job_id, "w1", 3, np.array([2.0, 1.0]), PROGRESS)
    raw = redis_client.get(store.keys.job(job_id).losses)
    assert raw == np.array([4.0, 3.0, 2.0, 1.0], dtype="<f4").tobytes()
    assert store.get_job(job_id)["progress"] == PROGRESS  # type: ignore[index]


def test_rewriting_iterations_after_a_redelivery_does_not_duplicate_them(
    store: JobStore,
) -> None:
    job_id = running(store)
    store.record_iterations(job_id, "w1", 1, np.array([5.0, 4.0, 3.0, 2.0]), PROGRESS)
    store.record_iterations(job_id, "w1", 2, np.array([4.5, 3.5]), PROGRESS)
    assert curve_of(store, job_id) == [5.0, 4.5, 3.5, 2.0]
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None and curve["total"] == 4


def test_a_write_with_a_foreign_token_is_refused_and_changes_nothing(store: JobStore) -> None:
    job_id = running(store, token="w1")
    store.record_iterations(job_id, "w1", 1, np.array([1.0, 0.5]), PROGRESS)
    before = store.get_job(job_id)
    with pytest.raises(LeaseLost, match="zombie"):
        store.record_iterations(job_id, "zombie", 1, np.array([9.0, 9.0, 9.0]), {"epoch": 9})
    with pytest.raises(LeaseLost):
        store.record_epoch(job_id, "zombie", {"epoch": 1, "train_loss": 9.0})
    with pytest.raises(LeaseLost):
        store.save_checkpoint(job_id, "zombie", b"stale")
    with pytest.raises(LeaseLost):
        store.truncate_curve(job_id, 0, 0, token="zombie")
    assert curve_of(store, job_id) == [1.0, 0.5]
    assert store.get_job(job_id) == before
    assert store.load_checkpoint(job_id) is None
    assert store.read_curve(job_id, tenant=TENANT)["epochs"] == []  # type: ignore[index]


def test_a_worker_whose_job_was_reaped_can_no_longer_write(store: JobStore) -> None:
    job_id = running(store, token="w1")
    store.finish(job_id, "failed", error={"code": "worker_lost", "message": "lease lapsed"})
    with pytest.raises(LeaseLost):
        store.record_iterations(job_id, "w1", 1, np.array([1.0]), PROGRESS)
    assert curve_of(store, job_id) == []


def test_record_iterations_rejects_iteration_zero(store: JobStore) -> None:
    with pytest.raises(ValueError, match="first_iteration.*0"):
        store.record_iterations(running(store), "w1", 0, np.array([1.0]), PROGRESS)


def test_an_epoch_row_written_twice_is_stored_once(store: JobStore) -> None:
    job_id = running(store)
    row = {"epoch": 1, "iteration": 10, "train_loss": 0.5, "train_accuracy": 0.8,
           "val_loss": 0.6, "val_accuracy": 0.75}
    store.record_epoch(job_id, "w1", row, progress=PROGRESS)
    store.record_epoch(job_id, "w1", row)
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None and curve["epochs"] == [row]
    assert store.get_job(job_id)["progress"] == PROGRESS  # type: ignore[index]


@pytest.mark.parametrize("epoch", [0, None, "1", True])
def test_an_epoch_row_needs_a_positive_epoch_number(store: JobStore, epoch: Any) -> None:
    with pytest.raises(ValueError, match="epoch"):
        store.record_epoch(running(store), "w1", {"epoch": epoch})


def test_checkpoints_round_trip_and_vanish_when_the_job_ends(store: JobStore) -> None:
    job_id = running(store)
    assert store.load_checkpoint(job_id) is None
    blob = bytes(range(256)) * 10
    store.save_checkpoint(job_id, "w1", blob)
    assert store.load_checkpoint(job_id) == blob
    store.finish(job_id, "cancelled", token="w1")
    assert store.load_checkpoint(job_id) is None


def test_truncate_keeps_the_first_iterations_and_epochs(store: JobStore) -> None:
    job_id = running(store)
    store.record_iterations(job_id, "w1", 1, np.arange(1.0, 11.0), PROGRESS)
    for epoch in (1, 2, 3):
        store.record_epoch(job_id, "w1", {"epoch": epoch, "iteration": epoch * 3})
    store.truncate_curve(job_id, 6, 2, token="w1")
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None
    assert curve["loss"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and curve["total"] == 6
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2]
    store.truncate_curve(job_id, 0, 0)
    empty = store.read_curve(job_id, tenant=TENANT)
    assert empty is not None and empty["total"] == 0 and empty["epochs"] == []


def test_warnings_are_added_once(store: JobStore) -> None:
    job_id = queued(store)
    assert store.add_warning(job_id, "learning rate 1e-6 barely moves the loss")
    assert store.add_warning(job_id, "learning rate 1e-6 barely moves the loss") is False
    assert store.add_warning(job_id, "écart / gap")
    job = store.get_job(job_id)
    assert job is not None
    assert job["warnings"] == ["learning rate 1e-6 barely moves the loss", "écart / gap"]


def test_a_warning_for_an_unknown_job_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.add_warning("c" * 32, "hello")


def test_reclaim_takes_back_a_lapsed_lease_and_undoes_a_requeue_without_an_attempt(
    store: JobStore,
) -> None:
    job_id = running(store, "w1")
    store.release_lease(job_id, "w1")  # lapsed during an outage...
    assert store.reap(job_id, max_attempts=3) == "queued"  # ...and the reaper re-queued it

    assert store.reclaim_lease(job_id, "w1", 60) == "ours"

    job = store.get_job(job_id)
    assert job is not None and job["status"] == "running" and job["attempts"] == 1
    assert store.lease_holder(job_id) == "w1"


def test_reclaim_says_whether_another_worker_took_it_or_the_job_ended(
    store: JobStore,
) -> None:
    taken = running(store, "w1")
    store.release_lease(taken, "w1")
    assert store.acquire_lease(taken, "w2", 60)
    assert store.reclaim_lease(taken, "w1", 60) == "taken"
    assert store.lease_holder(taken) == "w2"

    ended = running(store, "w1")
    store.finish(ended, "succeeded", token="w1")
    assert store.reclaim_lease(ended, "w1", 60) == "ended"
    assert store.lease_holder(ended) is None
