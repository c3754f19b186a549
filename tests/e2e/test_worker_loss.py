"""A whole worker (main and pool) killed mid-job: readiness drops, a new worker resumes it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from scripts.stack import RedisServer, stack_env, start_worker
from tests.e2e.conftest import FAST, running_service, wait_for

LONG_DIGITS = {"dataset": "digits", "hidden_sizes": [256, 256], "activation": "relu",
               "learning_rate": 0.01, "batch_size": 8, "epochs": 40}


def test_a_killed_worker_drops_readiness_and_a_new_worker_resumes_its_job(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_service(redis_server, tmp_path, DESCENT_CHECKPOINT_SECONDS="0") as service:
        job_id = service.submit(**LONG_DIGITS)["id"]
        wait_for(lambda: service.job(job_id)["progress"]["epoch"] >= 2, 120, "two epochs")
        victims = [service.worker.pid, *service.pool_pids()]

        for pid in victims:  # the whole worker, without a word to anyone
            os.kill(pid, signal.SIGKILL)

        # Readiness counts workers heard from within 3 heartbeats: it must drop by itself.
        wait_for(lambda: service.client.get("/readyz").status_code == 503, 30,
                 "/readyz to notice that no worker is left")
        before = int(service.job(job_id)["progress"]["iteration"])
        env = stack_env(service.settings.redis_url, **FAST,
                        DESCENT_KEY_PREFIX=service.settings.key_prefix)
        replacement = start_worker(env, name="replacement", log=tmp_path / "new.log",
                                   args=["--without-mingle", "--without-gossip"])
        try:
            # Its reaper puts the job back in the queue (the old lease has lapsed) and it
            # picks the job up again from its last checkpoint.
            done = service.wait_status(job_id, ("succeeded", "failed"), timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2
            assert done["progress"]["iteration"] > before
            curve = service.full_curve(job_id)
            assert curve["iterations"] == list(range(1, curve["total"] + 1))
            assert service.client.get("/readyz").status_code == 200
        finally:
            replacement.stop()
