"""Two deployments with different key prefixes on one Redis database leave each other alone."""

from __future__ import annotations

from pathlib import Path

from scripts.stack import RedisServer
from tests.e2e.conftest import running_service

SMALL = {"dataset": "spiral", "hidden_sizes": [16], "activation": "relu",
         "learning_rate": 0.5, "batch_size": 50, "epochs": 3}


def test_two_deployments_on_one_database_each_run_only_their_own_jobs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A lost message would be re-sent only after 10 minutes: every job must get through
    # on its first message, to its own deployment's worker.
    slow_requeue = {"DESCENT_QUEUED_REQUEUE_SECONDS": "600"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_service(redis_server, tmp_path / "a", **slow_requeue) as a,
        running_service(redis_server, tmp_path / "b", **slow_requeue) as b,
    ):
        assert a.settings.key_prefix != b.settings.key_prefix
        jobs = [(service, service.submit(**SMALL, seed=seed)["id"])
                for seed in range(4) for service in (a, b)]

        for service, job_id in jobs:
            done = service.wait_status(job_id, ("succeeded", "failed"), timeout=60)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
        for service, job_id in jobs:
            other = b if service is a else a
            assert other.client.get(f"/v1/jobs/{job_id}").status_code == 404

    for name in ("a", "b"):
        log = (tmp_path / name / "worker.log").read_text()
        assert "unknown job" not in log, log[-2000:]
