"""Isolation, through the API process in front of a real worker: to another tenant, every
route answers for one's jobs exactly as for ids that do not exist, and lists show only
one's own."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx

from scripts.stack import RedisServer, make_tenant
from tests.e2e.conftest import Service, bearer, running_service, wait_for

SPIRAL = {"dataset": "spiral", "hidden_sizes": [16], "activation": "relu", "epochs": 2,
          "batch_size": 50}
LONG = {"dataset": "digits", "hidden_sizes": [256], "epochs": 1000, "batch_size": 8}
DIVERGES = {"dataset": "blobs", "hidden_sizes": [32], "activation": "relu",
            "learning_rate": 10, "batch_size": 50, "epochs": 5}
QUERIES = ["", "?since=0", "?since=2&max_points=1", "?max_points=100000", "?since=999"]


def job_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, path template) of every route that names a job, from the API's OpenAPI: a
    route that a later version adds is covered without touching this test."""
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, operations in paths.items()
            if "{job_id}" in path for method in operations]


def answer(client: httpx.Client, method: str, path: str) -> tuple[int, str]:
    response = client.request(method, path)
    return response.status_code, response.text


def test_another_tenants_jobs_look_exactly_like_unknown_ids(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_service(redis_server, tmp_path,
                         quotas={"max_running_jobs": 4}) as service:
        done = service.submit(**SPIRAL)["id"]
        failed = service.submit(**DIVERGES)["id"]
        running = service.submit(**LONG)["id"]
        service.wait_status(done, ("succeeded",))
        service.wait_status(failed, ("failed",))
        service.wait_status(running, ("running",))
        wait_for(lambda: service.job(running)["progress"]["iteration"] > 0, 60, "progress")
        cancelled = service.submit(**SPIRAL, seed=1)["id"]
        service.client.post(f"/v1/jobs/{cancelled}/cancel")
        service.wait_status(cancelled, ("succeeded", "cancelled"))
        ids = [done, failed, running, cancelled]
        before = {job_id: service.job(job_id) for job_id in ids if job_id != running}

        with httpx.Client(base_url=service.api.url, trust_env=False, timeout=30,
                          headers=bearer(make_tenant(service.env, "mallory"))) as mallory:
            routes = job_routes(mallory)
            assert len(routes) >= 4
            rng = random.Random(8)
            leaks: list[Any] = []
            for n in range(1000):
                method, template = rng.choice(routes)
                job_id = rng.choice(ids)
                unknown = f"{rng.getrandbits(128):032x}"
                query = rng.choice(QUERIES) if template.endswith("/curve") else ""
                theirs = answer(mallory, method, template.format(job_id=job_id) + query)
                nobody = answer(mallory, method, template.format(job_id=unknown) + query)
                if theirs != (nobody[0], nobody[1].replace(unknown, job_id)):
                    leaks.append((n, method, template, query, theirs, nobody))
            assert leaks == []
            for status in ("", "?status=queued", "?status=running", "?status=succeeded",
                           "?status=failed", "?status=cancelled"):
                assert mallory.get(f"/v1/jobs{status}").json()["items"] == []
            assert mallory.get("/v1/me").json()["usage"]["active_jobs"] == 0

        # Mallory's reads and cancels changed nothing of the owner's jobs.
        assert service.job(running)["status"] == "running"
        assert not service.job(running)["cancel_requested"]
        for job_id, job in before.items():
            assert service.job(job_id) == job
        assert {item["id"] for item in service.client.get("/v1/jobs").json()["items"]} == set(ids)
        service.client.post(f"/v1/jobs/{running}/cancel")


def test_another_tenants_uploads_look_exactly_like_unknown_ones(service: Service) -> None:
    """To another tenant, an upload (by id or by name) is answered as one that does not
    exist: reading, deleting, and training on it, in a job, a sweep or a gradient check."""
    rows = "\n".join(f"{i % 7},{i % 5},{'ab'[i % 2]}" for i in range(40))
    made = service.client.post("/v1/datasets", data={"name": "owned-upload"},
                               files={"file": ("owned.csv", f"a,b,label\n{rows}\n")}).json()
    unknown_id = f"ds-{random.Random(3).getrandbits(80):020x}"
    bodies = {
        "/v1/jobs": lambda ref: {"dataset": ref, "hidden_sizes": [4], "batch_size": 4},
        "/v1/gradient-check": lambda ref: {"dataset": ref, "hidden_sizes": [4],
                                           "batch_size": 4},
        "/v1/sweeps": lambda ref: {"base": {"dataset": ref, "hidden_sizes": [4],
                                            "batch_size": 4},
                                   "space": {"learning_rate": {"values": [0.1, 1.0]}}},
    }
    with httpx.Client(base_url=service.api.url, trust_env=False, timeout=30,
                      headers=bearer(make_tenant(service.env, "mallory-uploads"))) as mallory:
        for ref, unknown in ((made["id"], unknown_id), ("owned-upload", "no-such-upload")):
            for method in ("GET", "DELETE"):
                theirs = answer(mallory, method, f"/v1/datasets/{ref}")
                nobody = answer(mallory, method, f"/v1/datasets/{unknown}")
                assert theirs == (nobody[0], nobody[1].replace(unknown, ref))
                assert theirs[0] == 404
            for path, body in bodies.items():
                theirs_answer = mallory.post(path, json=body(ref))
                nobody_answer = mallory.post(path, json=body(unknown))
                assert theirs_answer.status_code == nobody_answer.status_code == 422
                assert theirs_answer.text == nobody_answer.text.replace(unknown, ref)
        listed = mallory.get("/v1/datasets").json()["items"]
        assert [d for d in listed if d["kind"] == "upload"] == []
    assert service.client.get(f"/v1/datasets/{made['id']}").json() == made
