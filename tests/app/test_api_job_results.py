"""Following a job through the API: its curve, its metrics, and cancelling it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

SPIRAL = {"dataset": "spiral", "epochs": 2, "batch_size": 50}
METRICS = {
    "test": {"loss": 0.5, "accuracy": 0.8, "n": 180,
             "confusion_matrix": [[50, 10, 0], [5, 55, 0], [0, 21, 39]],
             "per_class": [{"label": 0, "precision": 0.9, "recall": 0.8, "f1": 0.85,
                            "support": 60}]},
    "train": {"loss": 0.4, "accuracy": 0.85},
    "validation": {"loss": 0.45, "accuracy": 0.82},
    "best_epoch": 2,
    "epochs_run": 2,
    "iterations": 26,
    "early_stopped": False,
    "overfitting": {"gap": 0.05, "threshold": 0.05, "flagged": False},
    "duration_seconds": 1.5,
}
EPOCH_ROW = {"epoch": 1, "iteration": 13, "train_loss": 0.9, "train_accuracy": 0.6,
             "val_loss": 1.0, "val_accuracy": 0.55}


def submit(client: TestClient, spec: dict[str, Any] | None = None, **headers: str) -> Any:
    response = client.post("/v1/jobs", json=spec or SPIRAL, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


# --- GET /v1/jobs/{id}/curve ---------------------------------------------------------------


def test_curve_since_returns_only_new_points(client: TestClient, worker: Any) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)
    worker.losses(job_id, [2.0, 1.5, 1.25])

    first = client.get(f"/v1/jobs/{job_id}/curve").json()
    worker.losses(job_id, [1.0, 0.75])
    second = client.get(f"/v1/jobs/{job_id}/curve", params={"since": first["next"]}).json()
    third = client.get(f"/v1/jobs/{job_id}/curve", params={"since": second["next"]}).json()

    assert first["iterations"] == [1, 2, 3]
    assert first["loss"] == [2.0, 1.5, 1.25]
    assert (first["next"], first["total"]) == (3, 3)
    assert second["iterations"] == [4, 5]
    assert second["loss"] == [1.0, 0.75]
    assert (second["next"], second["total"]) == (5, 5)
    assert third["iterations"] == [] and third["loss"] == []
    assert (third["next"], third["total"]) == (5, 5)


def test_curve_downsamples_to_max_points_and_keeps_the_last(
    client: TestClient, worker: Any
) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)
    worker.losses(job_id, np.linspace(2.0, 0.1, 1000))

    curve = client.get(f"/v1/jobs/{job_id}/curve", params={"max_points": 10}).json()

    assert len(curve["iterations"]) == len(curve["loss"]) == 10
    assert curve["iterations"][0] == 1
    assert curve["iterations"][-1] == 1000 == curve["next"]
    assert curve["iterations"] == sorted(set(curve["iterations"]))
    assert curve["loss"][-1] == pytest.approx(0.1)
    assert curve["total"] == 1000


def test_curve_has_epoch_rows_and_status(client: TestClient, worker: Any) -> None:
    job_id = submit(client)["id"]
    queued = client.get(f"/v1/jobs/{job_id}/curve").json()
    worker.start(job_id)
    worker.losses(job_id, [1.0] * 13)
    worker.epoch(job_id, EPOCH_ROW)

    curve = client.get(f"/v1/jobs/{job_id}/curve").json()

    assert queued == {"iterations": [], "loss": [], "next": 0, "total": 0, "epochs": [],
                      "status": "queued"}
    assert curve["epochs"] == [EPOCH_ROW]
    assert curve["status"] == "running"


def test_curve_of_an_unknown_job_is_404(client: TestClient) -> None:
    assert client.get(f"/v1/jobs/{'0' * 32}/curve").status_code == 404
    assert client.get("/v1/jobs/nope/curve").status_code == 404


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"since": -1}, "since", "got -1"),
        ({"max_points": 0}, "max_points", "got 0"),
        ({"max_points": 100_001}, "max_points", "got 100001"),
        ({"since": "x"}, "since", "got x"),
    ],
)
def test_curve_refuses_bad_query_parameters(
    client: TestClient, params: dict[str, Any], field: str, fragment: str
) -> None:
    job_id = submit(client)["id"]

    response = client.get(f"/v1/jobs/{job_id}/curve", params=params)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert field in error["msg"] and fragment in error["msg"]


def test_curve_accepts_max_points_100000(client: TestClient) -> None:
    job_id = submit(client)["id"]

    response = client.get(f"/v1/jobs/{job_id}/curve", params={"max_points": 100_000})

    assert response.status_code == 200


# --- GET /v1/jobs/{id}/metrics -------------------------------------------------------------


def _queued(client: TestClient, worker: Any, job_id: str) -> None:
    pass


def _running(client: TestClient, worker: Any, job_id: str) -> None:
    worker.start(job_id)


def _failed(client: TestClient, worker: Any, job_id: str) -> None:
    worker.start(job_id)
    worker.finish(job_id, "failed", error={"code": "diverged", "message": "loss nan"})


def _cancelled(client: TestClient, worker: Any, job_id: str) -> None:
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202


@pytest.mark.parametrize(
    ("status", "bring_to"),
    [("queued", _queued), ("running", _running), ("failed", _failed),
     ("cancelled", _cancelled)],
)
def test_metrics_are_409_until_the_job_succeeded(
    client: TestClient, worker: Any, status: str, bring_to: Callable[..., None]
) -> None:
    job_id = submit(client)["id"]
    bring_to(client, worker, job_id)

    response = client.get(f"/v1/jobs/{job_id}/metrics")

    assert response.status_code == 409
    assert response.json()["status"] == status
    assert repr(status) in response.json()["detail"]


def test_metrics_of_a_succeeded_job(client: TestClient, worker: Any) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)
    worker.finish(job_id, "succeeded", metrics=METRICS)

    response = client.get(f"/v1/jobs/{job_id}/metrics")

    assert response.status_code == 200
    assert response.json() == METRICS
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"


def test_metrics_of_an_unknown_job_is_404(client: TestClient) -> None:
    assert client.get(f"/v1/jobs/{'0' * 32}/metrics").status_code == 404
    assert client.get("/v1/jobs/nope/metrics").status_code == 404


# --- POST /v1/jobs/{id}/cancel -------------------------------------------------------------


def test_cancel_a_queued_job_cancels_it_now(client: TestClient) -> None:
    job_id = submit(client)["id"]

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["finished_at"] is not None


def test_cancel_a_running_job_asks_the_worker_to_stop(client: TestClient, worker: Any) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True
    assert worker.losses(job_id, [1.0]) is True  # the flag the training loop checks


def test_cancel_a_cancelled_job_again_is_202(client: TestClient) -> None:
    job_id = submit(client)["id"]
    first = client.post(f"/v1/jobs/{job_id}/cancel").json()

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] == first["finished_at"]


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancel_an_ended_job_is_409(client: TestClient, worker: Any, status: str) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)
    error = {"code": "diverged", "message": "loss nan"} if status == "failed" else None
    worker.finish(job_id, status, error=error, metrics=METRICS if error is None else None)

    response = client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert status in response.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == status


@pytest.mark.parametrize("job_id", ["0" * 32, "nope"])
def test_cancel_an_unknown_job_is_404(client: TestClient, job_id: str) -> None:
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
