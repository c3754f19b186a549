"""Isolation: to another tenant, every route answers for one's jobs exactly as for ids that
do not exist, and lists show only one's own."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.app.conftest import ADMIN_TOKEN, FakeWorker

SPIRAL = {"dataset": "spiral", "epochs": 2}
ROW = {"epoch": 1, "iteration": 3, "train_loss": 1.0, "train_accuracy": 0.5,
       "val_loss": 1.1, "val_accuracy": 0.4}
QUERIES = ["", "?since=0", "?since=2&max_points=1", "?max_points=100000", "?since=999"]


def job_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path template) of every route that names a job, from the app's OpenAPI: a
    route added later is covered without touching this test."""
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if "{job_id}" in path
        for method in operations
    ]


def alices_jobs(client: TestClient, worker: FakeWorker) -> list[str]:
    """Jobs of every kind: queued, running with a curve, succeeded with metrics, cancelled."""
    ids = [client.post("/v1/jobs", json={**SPIRAL, "seed": i}).json()["id"] for i in range(4)]
    for job_id in ids[:2]:
        worker.start(job_id)
        worker.losses(job_id, np.linspace(2, 1, 5))
        worker.epoch(job_id, ROW)
    metrics = {"test": None, "train": {"loss": 1.0, "accuracy": 0.5}}
    worker.finish(ids[1], "succeeded", metrics=metrics)
    assert client.post(f"/v1/jobs/{ids[2]}/cancel").status_code == 202
    return ids


def answer(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    response = client.request(method, path, headers=headers)
    return response.status_code, response.text


def test_another_tenants_jobs_look_exactly_like_unknown_ids(
    client: TestClient, worker: FakeWorker
) -> None:
    ids = alices_jobs(client, worker)
    made = client.post("/v1/admin/tenants", json={"name": "bob"},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    bob = {"Authorization": f"Bearer {made.json()['api_key']}"}
    routes = job_routes(client)
    assert len(routes) >= 4
    rng = random.Random(8)
    leaks = []

    for n in range(1000):
        method, template = rng.choice(routes)
        job_id = rng.choice(ids)
        unknown = f"{rng.getrandbits(128):032x}"
        query = rng.choice(QUERIES) if template.endswith("/curve") else ""
        theirs = answer(client, method, template.format(job_id=job_id) + query, bob)
        nobody = answer(client, method, template.format(job_id=unknown) + query, bob)
        if theirs != (nobody[0], nobody[1].replace(unknown, job_id)):
            leaks.append((n, method, template, query, theirs, nobody))

    assert leaks == []
    for status in ("", "?status=queued", "?status=running", "?status=succeeded",
                   "?status=cancelled"):
        assert client.get(f"/v1/jobs{status}", headers=bob).json()["items"] == []
    # Bob's reads and his cancels changed nothing of Alice's.
    assert [client.get(f"/v1/jobs/{i}").json()["status"] for i in ids] == [
        "running", "succeeded", "cancelled", "queued"]
    assert client.get("/v1/jobs").json()["items"][0]["id"] == ids[-1]
