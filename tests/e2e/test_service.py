"""End to end: the API in front of a real Celery worker process and a real Redis."""

from __future__ import annotations

import os
import signal

import numpy as np

from app.store.leases import LeaseHolder
from tests.e2e.conftest import Service, wait_for
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
    weights = service.store.load_weights(job_id)  # kept by the worker beside the metrics
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


def test_the_reaper_requeues_a_running_job_whose_worker_vanished(service: Service) -> None:
    store = service.store
    job, _ = store.create_job(ORPHAN_SPEC, tenant=TENANT, name="orphan")
    # A worker took it and died without a trace: no message will ever come back.
    vanished = LeaseHolder(store.client, prefix=service.settings.key_prefix)
    assert vanished.acquire_lease(job["id"], "0" * 32, ttl_seconds=0.2)
    assert vanished.start_attempt(job["id"], "0" * 32) == 1
    done = service.wait_status(job["id"], ("succeeded", "failed"), timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2


def test_the_reaper_sends_a_new_message_for_a_queued_job_that_lost_its_own(
    service: Service,
) -> None:
    # Stored but never enqueued: the API died between the two steps.
    job, _ = service.store.create_job({**ORPHAN_SPEC, "seed": 1}, tenant=TENANT, name="never enqueued")
    done = service.wait_status(job["id"], ("succeeded", "failed"), timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1


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
