"""End to end: the API in front of a real Celery worker process and a real Redis."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any
from unittest import mock

import numpy as np

from app.store.leases import LeaseHolder
from app.store.queue import queue_key
from tests.e2e.conftest import QUEUED_REQUEUE_SECONDS, Service, wait_for
from trainer import model_from_bytes

SMALL = {"dataset": "spiral", "hidden_sizes": [16], "activation": "relu",
         "learning_rate": 0.5, "batch_size": 50, "epochs": 5}
# About 25,000 iterations of a 2-512-512-3 net: seconds, long enough to watch it run.
LONG = {"dataset": "spiral", "hidden_sizes": [512, 512], "activation": "relu",
        "learning_rate": 0.01, "batch_size": 8, "epochs": 300}


def test_readiness_sees_the_worker(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["workers"] >= 1


def test_a_job_runs_its_curve_grows_and_it_ends_with_test_metrics(service: Service) -> None:
    spec = {**LONG, "epochs": 3}
    job = service.submit(**spec)
    job_id = job["id"]
    first = wait_for(
        lambda: (c := service.client.get(f"/v1/jobs/{job_id}/curve").json())["total"] > 0 and c,
        60, "the first points of the curve",
    )
    second = wait_for(
        lambda: (
            c := service.client.get(f"/v1/jobs/{job_id}/curve", params={"since": first["next"]})
            .json()
        )["iterations"] and c,
        60, "new points of the curve",
    )
    assert second["iterations"][0] > first["next"]  # only what is new
    assert second["total"] >= second["next"] > first["next"]
    running = service.job(job_id)
    assert running["status"] in ("running", "succeeded")
    done = service.wait_status(job_id, ("succeeded",), timeout=120)
    assert done["attempts"] == 1 and done["error"] is None
    assert done["progress"]["fraction"] == 1.0
    curve = service.full_curve(job_id)
    iterations_per_epoch = -(-648 // 8)
    assert curve["total"] == 3 * iterations_per_epoch
    assert curve["iterations"] == list(range(1, curve["total"] + 1))
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2, 3]
    metrics = service.client.get(f"/v1/jobs/{job_id}/metrics")
    assert metrics.status_code == 200
    body = metrics.json()
    assert body["test"]["n"] == 180
    assert np.array(body["test"]["confusion_matrix"]).sum() == 180
    assert set(body["overfitting"]) >= {"gap", "flagged"}
    # Kept by the worker beside the metrics.
    weights = service.store.load_weights(job_id, tenant=service.tenant_id)
    assert weights is not None
    model = model_from_bytes(weights)
    assert [p.shape for p in model.params] == [(2, 512), (512,), (512, 512), (512,), (512, 3),
                                               (3,)]


def test_cancel_stops_a_running_job_and_keeps_its_curve(service: Service) -> None:
    job_id = service.submit(**LONG)["id"]
    wait_for(lambda: service.full_curve(job_id)["total"] > 0, 60, "the job to start")
    response = service.client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = service.wait_status(job_id, ("cancelled",), timeout=30)
    assert job["finished_at"] is not None
    curve = service.full_curve(job_id)
    assert 0 < curve["total"] < 300 * 81
    assert curve["status"] == "cancelled"
    assert service.client.get(f"/v1/jobs/{job_id}/metrics").status_code == 409
    assert service.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202


def test_a_huge_learning_rate_fails_the_job_as_diverged(service: Service) -> None:
    job_id = service.submit(dataset="blobs", hidden_sizes=[32], activation="relu",
                            learning_rate=10, batch_size=50, epochs=5)["id"]
    job = service.wait_status(job_id, ("failed",), timeout=60)
    assert job["error"]["code"] == "diverged"
    assert "iteration" in job["error"]["message"]
    assert "learning_rate" in job["error"]["message"]
    assert job["attempts"] == 1  # never retried
    assert service.full_curve(job_id)["total"] >= 1


def test_the_same_job_and_seed_give_identical_curves(service: Service) -> None:
    ids = [service.submit(**SMALL, seed=7)["id"] for _ in range(2)]
    for job_id in ids:
        service.wait_status(job_id, ("succeeded",))
    first, second = (service.full_curve(job_id) for job_id in ids)
    assert first["loss"] == second["loss"] and first["epochs"] == second["epochs"]
    metrics = [service.client.get(f"/v1/jobs/{job_id}/metrics").json() for job_id in ids]
    assert metrics[0]["test"] == metrics[1]["test"]
    other = service.submit(**SMALL, seed=8)["id"]
    service.wait_status(other, ("succeeded",))
    assert service.full_curve(other)["loss"] != first["loss"]


def test_numerical_gradient_matches_float64_backprop_iteration_by_iteration(
    service: Service,
) -> None:
    spec = {"dataset": "blobs", "hidden_sizes": [6], "batch_size": 40, "epochs": 2,
            "learning_rate": 0.5}
    numerical = service.submit(**spec, gradient="numerical")["id"]
    backprop = service.submit(**spec, gradient="backprop", dtype="float64")["id"]
    for job_id in (numerical, backprop):
        job = service.wait_status(job_id, ("succeeded", "failed"), timeout=120)
        assert job["status"] == "succeeded", job["error"]
    a = np.array(service.full_curve(numerical)["loss"])
    b = np.array(service.full_curve(backprop)["loss"])
    assert a.shape == b.shape == (2 * 18,)  # 720 training rows / 40
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_killing_the_pool_process_mid_job_resumes_without_duplicates(service: Service) -> None:
    spec = {**LONG, "epochs": 20, "seed": 3}
    job_id = service.submit(**spec)["id"]
    # Kill after the second epoch's checkpoint (18 epochs before the end), so the new
    # attempt resumes from a checkpoint.
    wait_for(lambda: len(service.full_curve(job_id)["epochs"]) >= 2, 120, "two epochs")
    (pid,) = service.pool_pids()
    os.kill(pid, signal.SIGKILL)
    job = service.wait_status(job_id, ("succeeded", "failed"), timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    curve = service.full_curve(job_id)
    assert curve["iterations"] == list(range(1, 20 * 81 + 1))  # none missing, none twice
    assert [row["epoch"] for row in curve["epochs"]] == list(range(1, 21))
    # The resumed run equals one that never stopped, bit for bit.
    clean_id = service.submit(**spec)["id"]
    service.wait_status(clean_id, ("succeeded",), timeout=180)
    clean = service.full_curve(clean_id)
    assert clean["loss"] == curve["loss"]
    assert clean["epochs"] == curve["epochs"]


ORPHAN_SPEC = {**SMALL, "loss": "cross_entropy", "gradient": "backprop", "dtype": None,
               "momentum": 0.0, "validation_fraction": 0.1, "early_stopping_patience": None,
               "weight_init_std": None, "seed": 0}
VANISHED = "0" * 32  # the lease token of a worker that died without a trace
# Longer than any test waits: the vanished worker's lease lapses when the test says so.
VANISHED_LEASE_MS = 120_000


def create_held_job(service: Service, spec: dict[str, Any], name: str) -> str:
    """Store a job (as the API does, through the store) whose lease VANISHED holds from
    before its message is sent: its id is chosen first and the lease taken on it, so that
    the worker that gets the message cannot take the lease before the test's holder."""
    store = service.store
    job_id = uuid.uuid4().hex
    assert store.client.set(store.keys.job(job_id).lease, VANISHED, px=VANISHED_LEASE_MS)
    with mock.patch("app.store.jobs.uuid.uuid4", return_value=uuid.UUID(job_id)):
        job, created = store.create_job(spec, tenant=service.tenant_id, name=name)
    assert created and job["id"] == job_id
    return job_id


def wait_dropped(service: Service, job_id: str) -> None:
    """Until the worker that got the job's message gave it up: it waits out a held lease
    for lease + heartbeat seconds (a dead holder's lapses), then drops the message (acked,
    not requeued) with this line in its log (worker.runner, worker.tasks)."""
    line = f"job {job_id}: another worker holds the lease"
    assert service.log is not None
    wait_for(lambda: line in service.log.read_text(errors="replace"), 30,
             "the worker to drop the message of a job whose lease is held")


def dispatches(service: Service, job_id: str) -> int:
    """How many times the store has pushed the job's message onto the broker queue."""
    raw = service.store.client.hget(service.store.keys.job(job_id).job, "dispatches")
    return int(raw or 0)


def lapse(service: Service, job_id: str) -> None:
    """The vanished worker's lease runs out now (nobody renews it)."""
    assert service.store.client.pexpire(service.store.keys.job(job_id).lease, 1)


def test_the_reaper_requeues_a_running_job_whose_worker_vanished(service: Service) -> None:
    job_id = create_held_job(service, ORPHAN_SPEC, "orphan")
    # A worker took the job and died without a trace, its lease not yet lapsed.
    vanished = LeaseHolder(service.store.client, prefix=service.settings.key_prefix)
    assert vanished.start_attempt(job_id, VANISHED) == 1
    # The real worker that got the job's message found the lease held and dropped it: no
    # message of the job is left anywhere.
    wait_dropped(service, job_id)
    job = service.job(job_id)
    assert (job["status"], job["attempts"], dispatches(service, job_id)) == ("running", 1, 1)

    # The lease lapses: the reaper re-queues the job with a new message, and a new attempt
    # runs it to the end.
    lapse(service, job_id)
    done = service.wait_status(job_id, ("succeeded", "failed"), timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert dispatches(service, job_id) == 2


def test_the_reaper_sends_a_new_message_for_a_queued_job_that_lost_its_own(
    service: Service,
) -> None:
    # The job's only message is consumed and dropped while it is still queued: its lease
    # is held (by a worker that never started it), so the worker that got the message
    # gives it up after waiting for the lease.
    job_id = create_held_job(service, {**ORPHAN_SPEC, "seed": 1}, "lost message")
    wait_dropped(service, job_id)
    job = service.job(job_id)
    assert (job["status"], job["attempts"], dispatches(service, job_id)) == ("queued", 0, 1)
    lapse(service, job_id)

    # Queued for DESCENT_QUEUED_REQUEUE_SECONDS with an empty broker queue: the reaper
    # sends the job a new message, and the job runs once.
    assert service.store.client.llen(queue_key(service.settings.key_prefix)) == 0
    wait_for(lambda: dispatches(service, job_id) == 2, QUEUED_REQUEUE_SECONDS + 30,
             "the reaper to send the job a new message")
    done = service.wait_status(job_id, ("succeeded", "failed"), timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1
    assert dispatches(service, job_id) == 2


def test_metrics_show_the_worker_and_the_iterations_it_trained(service: Service) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    job = service.submit(**SMALL, seed=11)
    done = service.wait_status(job["id"], ("succeeded",), timeout=60)

    response = service.client.get("/metrics")
    assert response.status_code == 200
    values = {sample.name: sample.value
              for family in text_string_to_metric_families(response.text)
              for sample in family.samples if not sample.labels}
    assert values["descent_workers_online"] >= 1
    assert values["descent_iterations_trained_total"] >= done["progress"]["iterations"]
