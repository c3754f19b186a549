"""The fair queue through the real API and a real worker: one tenant's backlog does not
stand in front of another tenant's job."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx

from scripts.stack import RedisServer, make_tenant
from tests.e2e.conftest import bearer, running_service, wait_for

# Long enough (about a second) that the order of starts is the queue's, not a race.
JOB = {"dataset": "digits", "hidden_sizes": [64], "epochs": 6, "batch_size": 16}


def test_a_tenants_job_starts_before_another_tenants_backlog(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_service(redis_server, tmp_path, DESCENT_WORKER_CONCURRENCY="1") as service:
        a_jobs = [service.submit(**JOB, seed=seed)["id"] for seed in range(6)]
        b_key = make_tenant(service.env, "b")
        with httpx.Client(base_url=service.api.url, trust_env=False, timeout=30,
                          headers=bearer(b_key)) as b:
            b_job = b.post("/v1/jobs", json=JOB).json()["id"]
            # A's jobs beyond its two slots wait; B's went straight to the worker.
            usage = service.client.get("/v1/me").json()["usage"]
            assert usage["waiting_jobs"] >= 3, usage

            def ended(client: httpx.Client, job_id: str) -> dict | None:
                job = client.get(f"/v1/jobs/{job_id}").json()
                return job if job["status"] in ("succeeded", "failed", "cancelled") else None

            b_done = wait_for(lambda: ended(b, b_job), 180, "B's job to end")
            a_done = [wait_for(lambda i=i: ended(service.client, i), 180, f"A's job {i}")
                      for i in a_jobs]
            assert b.get(f"/v1/jobs/{a_jobs[0]}").status_code == 404  # A's, not B's

    assert b_done["status"] == "succeeded"
    assert all(job["status"] == "succeeded" for job in a_done)
    started = [datetime.fromisoformat(job["started_at"]) for job in a_done]
    assert started == sorted(started)  # A's own jobs run oldest first
    assert datetime.fromisoformat(b_done["started_at"]) < started[2]
