"""A real Celery worker process against the private Redis, and the API in front of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.local_redis import LocalRedis
from app.api.main import create_app
from app.store.registry import WorkerRegistry
from app.settings import Settings
from app.store.jobs import JobStore

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")
# A private database number: tests/app enqueue into db 0 of the same server, and this
# worker must not consume their messages.
E2E_DB = 1


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Service:
    settings: Settings
    client: TestClient
    store: JobStore
    worker: subprocess.Popen[bytes]
    log: Path

    def submit(self, **spec: Any) -> dict[str, Any]:
        response = self.client.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_status(self, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        job: dict[str, Any] = wait_for(reached, timeout, f"job {job_id} to be {statuses}")
        return job

    def full_curve(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}/curve", params={"max_points": 100_000})
        assert response.status_code == 200, response.text
        curve: dict[str, Any] = response.json()
        return curve

    def pool_pids(self) -> list[int]:
        """The prefork pool's child processes of the worker."""
        path = Path(f"/proc/{self.worker.pid}/task/{self.worker.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
        "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-mingle",
        "--without-gossip", "-n", f"e2e-{uuid.uuid4().hex[:8]}@%h",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.fixture(scope="session")
def service(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    prefix = f"e2e-{uuid.uuid4().hex}"
    redis_url = f"redis://127.0.0.1:{redis_server.port}/{E2E_DB}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DESCENT_KEY_PREFIX": prefix,
        # Short leases so that a killed worker's job is picked up within seconds.
        "DESCENT_LEASE_SECONDS": "3",
        "DESCENT_HEARTBEAT_SECONDS": "0.5",
        "DESCENT_REAPER_INTERVAL_SECONDS": "1",
        "DESCENT_QUEUED_REQUEUE_SECONDS": "1",
        "DESCENT_PROGRESS_FLUSH_SECONDS": "0.05",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    settings = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        lease_seconds=3,
        heartbeat_seconds=0.5,
        reaper_interval_seconds=1,
    )
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = _start_worker(env, log)
    try:
        with TestClient(create_app(settings)) as client:
            store = JobStore.from_settings(settings)
            registry = WorkerRegistry(store.client, prefix)
            wait_for(lambda: registry.alive(5.0) or worker.poll() is not None, 60, "the worker")
            assert worker.poll() is None, log.read_text()
            yield Service(settings, client, store, worker, log)
            store.close()
    finally:
        _stop_worker(worker)
