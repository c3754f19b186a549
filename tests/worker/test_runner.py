"""JobRunner in-process against a real Redis: outcomes, leases, attempts, checkpoints."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from app.settings import Settings
from app.store.jobs import JobStore
from tests.roles import TENANT
from trainer import TrainConfig, dataset_info, estimate_cost, model_from_bytes, train
from worker.runner import JobRunner

SPIRAL = {
    "dataset": "spiral", "hidden_sizes": [16], "activation": "relu", "loss": "cross_entropy",
    "gradient": "backprop", "dtype": None, "learning_rate": 0.5, "momentum": 0.0,
    "batch_size": 50, "epochs": 4, "validation_fraction": 0.1,
    "early_stopping_patience": None, "weight_init_std": None, "seed": 0,
}
ITERATIONS_PER_EPOCH = 13  # 648 training rows / 50


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=key_prefix, lease_seconds=1,
                    heartbeat_seconds=0.2)


def queued(store: JobStore, **changes: Any) -> str:
    job, created = store.create_job({**SPIRAL, **changes}, tenant=TENANT, name=None)
    assert created
    return str(job["id"])


def test_a_queued_job_runs_to_success_with_metrics_and_a_full_curve(
    store: JobStore, settings: Settings
) -> None:
    job_id = queued(store)
    assert JobRunner(store, settings, job_id).run() == "succeeded"
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "succeeded" and job["attempts"] == 1
    assert job["progress"]["iteration"] == job["progress"]["iterations"] == 4 * 13
    curve = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert curve is not None and curve["total"] == 4 * ITERATIONS_PER_EPOCH
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2, 3, 4]
    metrics = store.get_metrics(job_id, tenant=TENANT)
    assert metrics is not None and metrics["test"]["n"] == 180
    assert store.lease_holder(job_id) is None
    blob = store.load_weights(job_id, tenant=TENANT)
    assert blob is not None
    model = model_from_bytes(blob)
    assert [p.shape for p in model.params] == [(2, 16), (16,), (16, 3), (3,)]
    assert (model.activation, model.loss) == ("relu", "cross_entropy")
    assert 0 < store.client.ttl(store.keys.job(job_id).weights) <= store.job_ttl


def test_a_finished_job_is_never_run_again(store: JobStore, settings: Settings) -> None:
    job_id = queued(store)
    JobRunner(store, settings, job_id).run()
    before = store.read_curve(job_id, tenant=TENANT)
    assert JobRunner(store, settings, job_id).run() == "already succeeded"
    assert store.read_curve(job_id, tenant=TENANT) == before
    job = store.get_job(job_id)
    assert job is not None and job["attempts"] == 1


def test_an_unreadable_checkpoint_means_a_clean_restart(
    store: JobStore, settings: Settings
) -> None:
    reference_id = queued(store)
    JobRunner(store, settings, reference_id).run()
    job_id = queued(store)
    assert store.acquire_lease(job_id, "f" * 32, 60)
    store.save_checkpoint(job_id, "f" * 32, b"not a checkpoint")
    store.release_lease(job_id, "f" * 32)
    assert JobRunner(store, settings, job_id).run() == "succeeded"
    clean = store.read_curve(reference_id, tenant=TENANT, max_points=100_000)
    restarted = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert clean is not None and restarted is not None
    assert restarted["loss"] == clean["loss"]


def test_a_job_out_of_attempts_fails_as_worker_lost(store: JobStore, settings: Settings) -> None:
    job_id = queued(store)
    for _ in range(settings.max_attempts):  # attempts whose workers died
        assert store.acquire_lease(job_id, "e" * 32, 60)
        store.start_attempt(job_id, "e" * 32)
        store.release_lease(job_id, "e" * 32)
    assert JobRunner(store, settings, job_id).run() == "failed: worker_lost"
    job = store.get_job(job_id)
    assert job is not None and job["error"]["code"] == "worker_lost"


def test_a_live_lease_holder_keeps_the_job(store: JobStore, settings: Settings) -> None:
    job_id = queued(store)
    assert store.acquire_lease(job_id, "d" * 32, 60)  # another worker, alive
    outcome = JobRunner(store, settings, job_id).run()
    assert outcome == "another worker holds the lease"
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "queued" and job["attempts"] == 0


def test_divergence_fails_the_job_with_the_iteration(store: JobStore, settings: Settings) -> None:
    job_id = queued(store, dataset="blobs", hidden_sizes=[32], learning_rate=10.0)
    assert JobRunner(store, settings, job_id).run() == "failed: diverged"
    job = store.get_job(job_id)
    assert job is not None and job["error"]["code"] == "diverged"
    assert "iteration" in job["error"]["message"]


def test_cancel_during_the_run_ends_it_cancelled_within_a_batch(
    store: JobStore, settings: Settings
) -> None:
    job_id = queued(store, hidden_sizes=[256, 256], batch_size=4, epochs=200)
    runner = JobRunner(store, settings, job_id)
    outcomes: list[str] = []
    thread = threading.Thread(target=lambda: outcomes.append(runner.run()))
    thread.start()
    deadline = time.monotonic() + 30
    while (curve := store.read_curve(job_id, tenant=TENANT)) is not None and curve["total"] == 0:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)
    store.request_cancel(job_id, tenant=TENANT)
    thread.join(timeout=30)
    assert outcomes == ["cancelled"]
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "cancelled"
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None and 0 < curve["total"] < 200 * 162


def test_a_cancel_stops_the_run_mid_epoch_without_waiting_for_a_flush(
    store: JobStore, settings: Settings
) -> None:
    # Progress flushes are made rare, so only the cancel channel can stop the run early.
    rare_flushes = settings.model_copy(
        update={"progress_flush_seconds": 600, "progress_flush_iterations": 10**6}
    )
    job_id = queued(store, dataset="digits", hidden_sizes=[256, 256], batch_size=8, epochs=2)
    checks = {"count": 0, "cancelled_at": 0, "stopped_at": 0}

    def train_and_cancel_at_batch_30(config: Any, dataset: Any, callbacks: Any,
                                     resume: Any = None, **options: Any) -> Any:
        halted = callbacks.should_stop

        def should_stop() -> bool:
            checks["count"] += 1
            if checks["count"] == 30:
                store.request_cancel(job_id, tenant=TENANT)  # as a client would, mid-run
                checks["cancelled_at"] = checks["count"]
            if halted():
                checks["stopped_at"] = checks["count"]
                return True
            return False

        return train(config, dataset, replace(callbacks, should_stop=should_stop),
                     resume=resume, **options)

    runner = JobRunner(store, rare_flushes, job_id, train_fn=train_and_cancel_at_batch_30)
    assert runner.run() == "cancelled"
    # An epoch is 182 batches: before the cancel channel, the run went on to the epoch's
    # end (its flush). The channel's listener is a thread, so how many batches it takes to
    # be heard depends on the interpreter's thread switching (5 ms) and on the machine's
    # load: a handful when quiet, a few dozen seen under load; the epoch's end is far off.
    assert checks["cancelled_at"] == 30
    assert checks["cancelled_at"] <= checks["stopped_at"] < 182, checks
    curve = store.read_curve(job_id, tenant=TENANT)
    assert curve is not None and curve["total"] < 182


def test_the_soft_time_limit_fails_the_job_as_time_limit(
    store: JobStore, settings: Settings
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    def out_of_time(*args: Any, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()  # what Celery raises inside the task at the soft limit

    job_id = queued(store)
    assert JobRunner(store, settings, job_id, train_fn=out_of_time).run() == "failed: time_limit"
    job = store.get_job(job_id)
    assert job is not None and job["error"]["code"] == "time_limit"
    assert f"{settings.task_soft_time_limit:g} s" in job["error"]["message"]


def test_an_unavailable_dataset_fails_the_job_as_invalid_dataset(
    store: JobStore, settings: Settings, tmp_path: Any
) -> None:
    job_id = queued(store, dataset="mnist")
    lonely = settings.model_copy(update={"data_dir": str(tmp_path)})  # no mnist files there
    assert JobRunner(store, lonely, job_id).run() == "failed: invalid_dataset"
    job = store.get_job(job_id)
    assert job is not None and "train-images-idx3-ubyte.gz" in job["error"]["message"]


def counting_checkpoints(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the checkpoints the runner hands to the (real) store."""
    sizes: list[int] = []
    save = store.save_checkpoint

    def counted(job_id: str, token: str, blob: bytes) -> None:
        sizes.append(len(blob))
        save(job_id, token, blob)

    monkeypatch.setattr(store, "save_checkpoint", counted)
    return sizes


def test_each_epoch_is_checkpointed_within_the_budget(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = counting_checkpoints(store, monkeypatch)
    job_id = queued(store)
    every_epoch = settings.model_copy(update={"checkpoint_seconds": 0})
    assert JobRunner(store, every_epoch, job_id).run() == "succeeded"
    assert len(sizes) == SPIRAL["epochs"]
    config = TrainConfig.from_dict(SPIRAL)
    info = dataset_info("spiral")
    estimate = estimate_cost(config, info.n_train, info.n_features, info.n_classes)
    assert max(sizes) <= estimate.checkpoint_bytes  # what the runner's decision rests on
    job = store.get_job(job_id)
    assert job is not None and not any("checkpoint" in w for w in job["warnings"])


def test_checkpoints_follow_their_cadence_and_the_last_epoch_always_has_one(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = counting_checkpoints(store, monkeypatch)
    job_id = queued(store, epochs=20)  # a fast job: its 20 epochs fit in one cadence period
    assert settings.checkpoint_seconds == 30  # the default
    assert JobRunner(store, settings, job_id).run() == "succeeded"
    assert len(sizes) == 1


def test_a_network_whose_checkpoint_is_over_the_budget_runs_without_and_says_so(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = counting_checkpoints(store, monkeypatch)
    job_id = queued(store, hidden_sizes=[256, 256])  # ~0.6 MB of weights and best weights
    small = settings.model_copy(
        update={"max_checkpoint_bytes": 100_000, "max_weights_bytes": 200_000}
    )
    assert JobRunner(store, small, job_id).run() == "succeeded"
    assert sizes == []
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "succeeded"
    [warning] = [w for w in job["warnings"] if "checkpoint" in w]
    assert "0.5 MiB, over the limit of 0.1 MiB (DESCENT_MAX_CHECKPOINT_BYTES)" in warning
    assert "restarts from the beginning" in warning
    [weights_warning] = [w for w in job["warnings"] if "weights" in w]
    assert "not kept: 0.3 MiB, over the limit of 0.2 MiB (DESCENT_MAX_WEIGHTS_BYTES)" in (
        weights_warning
    )
    assert store.load_weights(job_id, tenant=TENANT) is None
    curve = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert curve is not None and curve["total"] == SPIRAL["epochs"] * ITERATIONS_PER_EPOCH


def test_another_attempt_ending_on_the_channel_is_not_a_cancel(
    store: JobStore, settings: Settings
) -> None:
    job_id = queued(store, hidden_sizes=[64], batch_size=4, epochs=3)
    runner = JobRunner(store, settings, job_id)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run()))
    thread.start()
    deadline = time.monotonic() + 30
    while (job := store.get_job(job_id)) is not None and job["progress"]["iteration"] == 0:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)

    store.client.publish(store.cancel_channel(job_id), "f" * 32)  # an old attempt's wake-up

    thread.join(timeout=60)
    assert outcome == ["succeeded"]


def test_a_lease_that_lapsed_unseen_is_taken_back_and_the_run_goes_on(
    store: JobStore, settings: Settings
) -> None:
    # As if Redis had stalled while the run was busy: the lease is simply gone when the
    # next progress write arrives. Nobody else holds it, so the run must not give up.
    job_id = queued(store, hidden_sizes=[64], batch_size=4, epochs=3)
    dropped: list[int] = []

    def train_losing_the_lease_once(config: Any, dataset: Any, callbacks: Any,
                                    resume: Any = None, **options: Any) -> Any:
        report = callbacks.on_iterations

        def on_iterations(first: int, losses: Any) -> None:
            if not dropped:
                store.client.delete(store.keys.job(job_id).lease)
                dropped.append(first)
            report(first, losses)

        return train(config, dataset, replace(callbacks, on_iterations=on_iterations),
                     resume=resume, **options)

    runner = JobRunner(store, settings, job_id, train_fn=train_losing_the_lease_once)
    assert runner.run() == "succeeded"
    job = store.get_job(job_id)
    assert job is not None and job["attempts"] == 1 and dropped
    curve = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert curve is not None and curve["total"] == job["progress"]["iterations"]
    assert None not in curve["loss"]
