"""DESCENT_WORKER_CONCURRENCY decides how many jobs one worker runs at once (#7)."""

from __future__ import annotations

from pathlib import Path

from scripts.stack import RedisServer
from tests.e2e.conftest import running_service, wait_for

# About 40,000 iterations of a 64-512-512-10 network: far longer than the test waits.
LONG_DIGITS = {"dataset": "digits", "hidden_sizes": [512, 512], "activation": "relu",
               "learning_rate": 0.01, "batch_size": 8, "epochs": 200}


def test_a_worker_with_concurrency_2_runs_two_jobs_at_the_same_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The harness's worker command has no --concurrency: the setting alone must decide.
    with running_service(redis_server, tmp_path, DESCENT_WORKER_CONCURRENCY="2") as service:
        ids = [service.submit(**LONG_DIGITS, seed=seed)["id"] for seed in (1, 2)]

        def both_running() -> list[str] | None:
            statuses = [service.job(job_id)["status"] for job_id in ids]
            return statuses if statuses == ["running", "running"] else None

        try:
            wait_for(both_running, 90, "both jobs to be running at the same time")
        finally:
            for job_id in ids:
                service.client.post(f"/v1/jobs/{job_id}/cancel")
        for job_id in ids:
            service.wait_status(job_id, ("cancelled",), timeout=60)
