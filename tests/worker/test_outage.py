"""A job whose worker lives through Redis restarts: no attempt used, the same result."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.settings import Settings
from scripts.stack import start_redis
from tests.roles import TENANT, AllRoles
from worker.runner import JobRunner

SPEC: dict[str, Any] = {
    "dataset": "digits", "hidden_sizes": [128, 128], "activation": "relu",
    "loss": "cross_entropy", "gradient": "backprop", "dtype": None, "learning_rate": 0.05,
    "momentum": 0.9, "batch_size": 8, "epochs": 12, "validation_fraction": 0.1,
    "early_stopping_patience": None, "weight_init_std": None, "seed": 3,
}


class PersistentRedis:
    """A redis-server with an append-only file (fsync every second), killed and restarted
    on the same port and directory as a crashed and recovered production Redis would be."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = start_redis(aof_dir=directory)
        self.port = self.server.port

    def crash(self) -> None:
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()

    def start(self) -> None:
        self.server = start_redis(aof_dir=self.directory, port=self.port, timeout=20)

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path)
    try:
        yield server
    finally:
        server.server.stop()


def run_job(store: AllRoles, settings: Settings) -> tuple[str, threading.Thread, list[str]]:
    job_id = str(store.create_job(SPEC, tenant=TENANT, name=None)[0]["id"])
    outcome: list[str] = []
    thread = threading.Thread(
        target=lambda: outcome.append(JobRunner(store, settings, job_id).run()), daemon=True
    )
    thread.start()
    return job_id, thread, outcome


def wait_for_progress(store: AllRoles, job_id: str, beyond: int) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            job = store.get_job(job_id)
        except redis.ConnectionError:
            job = None
        if job is not None and job["progress"]["iteration"] > beyond:
            return int(job["progress"]["iteration"])
        assert time.monotonic() < deadline, f"no progress beyond iteration {beyond}"
        time.sleep(0.02)


def test_a_job_lives_through_three_redis_restarts_with_no_attempt_used(
    persistent_redis: PersistentRedis, key_prefix: str
) -> None:
    settings = Settings(redis_url=persistent_redis.url, key_prefix=key_prefix,
                        lease_seconds=1, heartbeat_seconds=0.2, redis_outage_seconds=60)
    client = redis.Redis.from_url(persistent_redis.url, socket_connect_timeout=1)
    store = AllRoles(client, prefix=key_prefix)

    reference_id, thread, outcome = run_job(store, settings)
    thread.join(timeout=120)
    assert outcome == ["succeeded"]

    job_id, thread, outcome = run_job(store, settings)
    seen = 0
    for _ in range(3):
        seen = wait_for_progress(store, job_id, seen + 100)
        persistent_redis.crash()
        time.sleep(1.5)  # down for longer than the lease: the worker must take it back
        persistent_redis.start()
    thread.join(timeout=120)

    assert outcome == ["succeeded"]
    job = store.get_job(job_id)
    assert job is not None and job["status"] == "succeeded"
    assert job["attempts"] == 1
    reference = store.read_curve(reference_id, tenant=TENANT, max_points=100_000)
    survived = store.read_curve(job_id, tenant=TENANT, max_points=100_000)
    assert reference is not None and survived is not None
    assert survived["total"] == reference["total"] == job["progress"]["iterations"]
    assert survived["loss"] == reference["loss"]
    assert survived["epochs"] == reference["epochs"]
    metrics = store.get_metrics(job_id, tenant=TENANT)
    assert metrics["test"] == store.get_metrics(reference_id, tenant=TENANT)["test"]
    client.close()
