"""WEB_CONCURRENCY: the API in several processes, each with its own event hub."""

from __future__ import annotations

from pathlib import Path

from httpx_sse import connect_sse

from scripts.stack import RedisServer
from tests.e2e.conftest import running_service
from tests.scripts.processes import descendants

JOB = {"dataset": "digits", "hidden_sizes": [32], "epochs": 4, "batch_size": 32}


def test_two_api_processes_serve_jobs_streams_and_curves(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_service(redis_server, tmp_path, WEB_CONCURRENCY="2") as service:
        assert len(descendants(service.api.pid)) >= 2  # uvicorn's two worker processes
        ids = [service.submit(**JOB, seed=seed)["id"] for seed in range(4)]
        for job_id in ids:  # each follow may land on either process
            with connect_sse(service.client, "GET", f"/v1/jobs/{job_id}/events",
                             timeout=60) as source:
                events = [sse.event for sse in source.iter_sse()]
            assert events[0] == "status" and events[-1] == "end"
            assert service.job(job_id)["status"] == "succeeded"
            assert service.full_curve(job_id)["total"] > 0
