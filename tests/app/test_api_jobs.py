"""The jobs API against a real Redis: submit, idempotency, list and read jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.store.jobs import JobStore
from app.store.tenants import TenantStore
from tests.roles import TENANT

SPIRAL = {"dataset": "spiral", "epochs": 2, "batch_size": 50}
SPEC_DEFAULTS = {
    "hidden_sizes": [50],
    "activation": "sigmoid",
    "loss": "cross_entropy",
    "gradient": "backprop",
    "dtype": None,
    "learning_rate": 0.1,
    "momentum": 0.0,
    "batch_size": 100,
    "epochs": 10,
    "validation_fraction": 0.1,
    "early_stopping_patience": None,
    "weight_init_std": None,
    "seed": 0,
}
JOB_FIELDS = {"id", "name", "status", "spec", "created_at", "started_at", "finished_at",
              "progress", "cancel_requested", "attempts", "warnings", "error", "sweep_id", "trial"}


def submit(client: TestClient, spec: dict[str, Any] | None = None, **headers: str) -> Any:
    response = client.post("/v1/jobs", json=spec or SPIRAL, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


# --- POST /v1/jobs -------------------------------------------------------------------------


def test_submit_answers_202_with_location_and_the_full_job(
    client: TestClient, times_enqueued: Callable[[str], int]
) -> None:
    response = client.post("/v1/jobs", json={"dataset": "spiral", "name": "first"})

    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert job["name"] == "first"
    assert job["status"] == "queued"
    assert job["spec"] == {"dataset": "spiral", **SPEC_DEFAULTS}  # name lives apart
    assert job["created_at"].endswith("Z")
    assert job["started_at"] is None and job["finished_at"] is None
    # The total is known at the door: 10 epochs of ceil(648 training rows / 100) batches.
    assert job["progress"] == {"epoch": 0, "epochs": 10, "iteration": 0, "iterations": 70,
                               "fraction": 0.0, "eta_seconds": None}
    assert job["cancel_requested"] is False
    assert job["attempts"] == 0
    assert job["warnings"] == [] and job["error"] is None
    assert times_enqueued(job["id"]) == 1


def test_submitted_job_is_stored_queued_and_readable(client: TestClient, store: JobStore) -> None:
    job = submit(client)

    assert store.get_job(job["id"]) == job
    assert client.get(f"/v1/jobs/{job['id']}").json() == job
    queued, _ = store.list_jobs(tenant=TENANT, status="queued")
    assert [item["id"] for item in queued] == [job["id"]]


def test_submit_keeps_the_values_given(client: TestClient) -> None:
    spec = {"dataset": "blobs", "hidden_sizes": [8, 4], "activation": "relu",
            "loss": "sum_squares", "gradient": "numerical", "dtype": "float64",
            "learning_rate": 10, "momentum": 0.9, "batch_size": 20, "epochs": 3,
            "validation_fraction": 0.5, "early_stopping_patience": 1,
            "weight_init_std": 0.01, "seed": 7}

    job = submit(client, spec)

    assert job["spec"] == {**spec, "learning_rate": 10.0}
    assert job["name"] is None


# --- Idempotency-Key -----------------------------------------------------------------------


def test_same_idempotency_key_and_body_replays_the_same_job(
    client: TestClient, store: JobStore, times_enqueued: Callable[[str], int]
) -> None:
    first = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": "k-1"})

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Location"] == f"/v1/jobs/{first.json()['id']}"
    assert times_enqueued(first.json()["id"]) == 1
    assert len(store.list_jobs(tenant=TENANT)[0]) == 1


def test_idempotency_compares_the_spec_with_defaults_filled_in(client: TestClient) -> None:
    first = submit(client, {"dataset": "spiral"}, **{"Idempotency-Key": "k-defaults"})
    spelled_out = submit(client, {"dataset": "spiral", "epochs": 10, "seed": 0},
                         **{"Idempotency-Key": "k-defaults"})

    assert spelled_out["id"] == first["id"]


@pytest.mark.parametrize(
    "other",
    [{**SPIRAL, "epochs": 3}, {**SPIRAL, "name": "renamed"}],
    ids=["other-spec", "other-name"],
)
def test_same_idempotency_key_with_another_body_is_409(
    client: TestClient, store: JobStore, other: dict[str, Any]
) -> None:
    first = submit(client, SPIRAL, **{"Idempotency-Key": "k-2"})

    response = client.post("/v1/jobs", json=other, headers={"Idempotency-Key": "k-2"})

    assert response.status_code == 409
    assert "k-2" in response.json()["detail"]
    assert [job["id"] for job in store.list_jobs(tenant=TENANT)[0]] == [first["id"]]


def test_different_idempotency_keys_make_different_jobs(client: TestClient) -> None:
    first = submit(client, SPIRAL, **{"Idempotency-Key": "k-a"})
    second = submit(client, SPIRAL, **{"Idempotency-Key": "k-b"})

    assert first["id"] != second["id"]


def test_an_overlong_idempotency_key_is_422(client: TestClient, store: JobStore) -> None:
    response = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": "k" * 201})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "idempotency-key"]
    assert store.list_jobs(tenant=TENANT)[0] == []


# --- GET /v1/jobs --------------------------------------------------------------------------


def test_list_is_newest_first(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(3)]

    response = client.get("/v1/jobs")

    assert response.status_code == 200
    body = response.json()
    assert [job["id"] for job in body["items"]] == ids[::-1]
    assert body["next_cursor"] is None


def test_list_filters_by_status(client: TestClient, worker: Any) -> None:
    queued, running, cancelled = (submit(client)["id"] for _ in range(3))
    worker.start(running)
    assert client.post(f"/v1/jobs/{cancelled}/cancel").status_code == 202

    def ids(status: str) -> list[str]:
        response = client.get("/v1/jobs", params={"status": status})
        assert response.status_code == 200
        return [job["id"] for job in response.json()["items"]]

    assert ids("queued") == [queued]
    assert ids("running") == [running]
    assert ids("cancelled") == [cancelled]
    assert ids("succeeded") == []


def test_list_pages_with_limit_and_cursor_until_next_cursor_is_null(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(5)]

    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = client.get("/v1/jobs", params=params).json()
        pages += 1
        assert len(body["items"]) <= 2
        seen += [job["id"] for job in body["items"]]
        if body["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": body["next_cursor"]}

    assert seen == ids[::-1]
    assert pages == 3


def test_a_page_that_ends_exactly_at_the_last_job_has_no_next_cursor(client: TestClient) -> None:
    for _ in range(2):
        submit(client)

    body = client.get("/v1/jobs", params={"limit": 2}).json()

    assert len(body["items"]) == 2
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"status": "done"}, "status", "got done"),
        ({"cursor": "abc"}, "cursor", "got abc"),
        ({"cursor": "0"}, "cursor", "got 0"),
        ({"limit": 0}, "limit", "got 0"),
        ({"limit": 201}, "limit", "got 201"),
    ],
)
def test_list_refuses_bad_query_parameters(
    client: TestClient, params: dict[str, Any], field: str, fragment: str
) -> None:
    response = client.get("/v1/jobs", params=params)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert field in error["msg"] and fragment in error["msg"]


# --- GET /v1/jobs/{id} ---------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job-id", "A" * 32])
def test_unknown_job_is_404(client: TestClient, job_id: str) -> None:
    response = client.get(f"/v1/jobs/{job_id}")

    assert response.status_code == 404
    assert job_id in response.json()["detail"]


def test_get_shows_progress_and_attempts_of_a_running_job(
    client: TestClient, worker: Any
) -> None:
    job_id = submit(client)["id"]
    worker.start(job_id)
    worker.losses(job_id, [1.0, 0.9])

    job = client.get(f"/v1/jobs/{job_id}").json()

    assert job["status"] == "running"
    assert job["attempts"] == 1
    assert job["started_at"] is not None
    assert job["progress"]["iteration"] == 2


def test_everything_a_submission_writes_to_redis_is_under_the_key_prefix(
    make_client: Callable[..., TestClient], redis_url: str, key_prefix: str
) -> None:
    # A database of its own, so that other tests' keys cannot be mistaken for ours.
    db = 7
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    raw = redis.Redis.from_url(url)
    before = set(raw.keys("*"))
    client = make_client(redis_url=url)
    _, key, _ = TenantStore(raw, prefix=key_prefix).create_tenant("carol")

    response = client.post(
        "/v1/jobs", json={"dataset": "spiral"}, headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 202
    made = {key.decode() for key in set(raw.keys("*")) - before}
    assert made, "the submission wrote nothing"
    assert all(key.startswith(f"{key_prefix}:") for key in made), sorted(made)
    assert f"{key_prefix}:broker:train" in made  # the message itself
    raw.delete(*made)
    raw.close()
