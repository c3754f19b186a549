"""Redis crashes and comes back (AOF) under a real worker and the real API process."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import RedisServer, start_redis
from tests.e2e.conftest import running_service, wait_for

# About 24,000 iterations of a 64-256-256-10 net: 10 to 20 s of training, longer than the
# three outages and the progress between them.
SPEC = {"dataset": "digits", "hidden_sizes": [256, 256], "activation": "relu",
        "learning_rate": 0.005, "momentum": 0.9, "batch_size": 8, "epochs": 120, "seed": 5}


def crash_and_restart(server: RedisServer, aof_dir: Path, down_seconds: float,
                      while_down: list[httpx.Client]) -> tuple[RedisServer, list[int]]:
    """SIGKILL redis-server (no shutdown, the AOF loses up to its last second), ask the API
    something while it is down, and start it again on the same port and directory."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    answers = [client.get("/v1/jobs") for client in while_down]
    for answer in answers:
        assert answer.status_code != 503 or answer.headers.get("retry-after"), answer.headers
    codes = [answer.status_code for answer in answers]
    time.sleep(down_seconds)  # an outage of a known length, not a wait for a condition
    return start_redis(aof_dir=aof_dir, port=server.port, timeout=30), codes


@pytest.fixture
def aof_dir(tmp_path: Path) -> Path:
    path = tmp_path / "aof"
    path.mkdir()
    return path


def test_jobs_live_through_three_redis_crashes_with_no_attempt_used(
    aof_dir: Path, tmp_path: Path
) -> None:
    server = start_redis(aof_dir=aof_dir)
    try:
        with running_service(server, tmp_path, DESCENT_LEASE_SECONDS="2",
                             DESCENT_HEARTBEAT_SECONDS="0.4") as service:
            job_id = service.submit(**SPEC)["id"]
            queued_id = service.submit(**{**SPEC, "seed": 6})["id"]  # waits for the worker
            seen = 0
            for _ in range(3):

                def moved_on(beyond: int = seen) -> int | None:
                    iteration = int(service.job(job_id)["progress"]["iteration"])
                    return iteration if iteration > beyond + 1000 else None

                seen = wait_for(moved_on, 120, "the job to make progress")
                time.sleep(1.2)  # > 1 s, so the AOF holds the job's recent writes
                server, codes = crash_and_restart(server, aof_dir, 3.0, [service.client])
                assert codes == [503]  # unavailable, never a 500

            done = service.wait_status(job_id, ("succeeded", "failed"), timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 1
            second = service.wait_status(queued_id, ("succeeded", "failed"), timeout=180)
            assert second["status"] == "succeeded" and second["attempts"] == 1, second

            again = service.submit(**SPEC)["id"]  # the same job, never interrupted
            service.wait_status(again, ("succeeded",), timeout=180)
            survived, clean = service.full_curve(job_id), service.full_curve(again)
            assert survived["total"] == clean["total"] == done["progress"]["iterations"]
            assert survived["loss"] == clean["loss"]
            assert survived["epochs"] == clean["epochs"]
            metrics = [service.client.get(f"/v1/jobs/{i}/metrics").json() for i in (job_id, again)]
            assert metrics[0]["test"] == metrics[1]["test"]
    finally:
        server.stop()


def test_a_worker_with_two_processes_lives_through_a_redis_crash_and_keeps_taking_jobs(
    aof_dir: Path, tmp_path: Path
) -> None:
    # Default lease, heartbeat and reaper: the restart must not let the idle process (or
    # the reaper) take the running job from its owner, who is alive and waiting.
    server = start_redis(aof_dir=aof_dir)
    try:
        with running_service(server, tmp_path, DESCENT_WORKER_CONCURRENCY="2",
                             DESCENT_LEASE_SECONDS="5", DESCENT_HEARTBEAT_SECONDS="1",
                             DESCENT_REAPER_INTERVAL_SECONDS="2") as service:
            job_id = service.submit(**SPEC)["id"]
            # Queued behind it: every job that got its 202 more than a second before the
            # crash must still be there afterwards, and end.
            queued = [service.submit(**{**SPEC, "epochs": 1, "seed": seed})["id"]
                      for seed in range(20, 25)]
            wait_for(lambda: service.job(job_id)["progress"]["iteration"] > 1000, 120,
                     "the job to make progress")
            time.sleep(1.2)  # > 1 s, so the AOF holds the job's recent writes
            server, codes = crash_and_restart(server, aof_dir, 7.0, [service.client])
            assert codes == [503]
            for other in queued:
                ended = service.wait_status(other, ("succeeded", "failed"), timeout=180)
                assert ended["status"] == "succeeded", ended

            after = service.submit(**{**SPEC, "epochs": 2, "seed": 9})["id"]
            second = service.wait_status(after, ("succeeded", "failed"), timeout=120)
            assert second["status"] == "succeeded", second
            done = service.wait_status(job_id, ("succeeded", "failed"), timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 1
            assert service.worker.process.poll() is None, "the worker shut down"
            log = service.worker.log.read_text() if service.worker.log else ""
            assert "Unrecoverable error" not in log
    finally:
        server.stop()
