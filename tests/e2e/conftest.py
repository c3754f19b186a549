"""A real Celery worker process and the real API process on the private Redis, started by
the harness that `make run` uses (scripts.stack)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store.jobs import JobStore
from scripts.stack import (
    Api,
    RedisServer,
    Worker,
    bearer,
    make_tenant,
    stack_env,
    start_api,
    start_worker,
)

TERMINAL = ("succeeded", "failed", "cancelled")
# A private database number: tests/app enqueue into db 0 of the same server, and these
# workers must not consume their messages (each service has its own key prefix too).
E2E_DB = 1
# Short leases so that a killed worker's job is picked up within seconds.
FAST = {
    "DESCENT_LEASE_SECONDS": "3",
    "DESCENT_HEARTBEAT_SECONDS": "0.5",
    "DESCENT_REAPER_INTERVAL_SECONDS": "1",
    "DESCENT_QUEUED_REQUEUE_SECONDS": "1",
    "DESCENT_PROGRESS_FLUSH_SECONDS": "0.05",
}
# The session's service: a queued job whose message is gone gets a new one after this long.
QUEUED_REQUEUE_SECONDS = 6
TENANT_NAME = "e2e"  # the tenant every service makes for its client (one per key prefix)


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
    client: httpx.Client  # speaks to the API process, with the tenant's key
    store: JobStore
    worker: Worker
    api: Api
    env: dict[str, str]  # the children's environment (REDIS_URL, the DESCENT_* settings)
    tenant_id: str  # the tenant whose key `client` sends: the owner of the jobs it submits

    @property
    def log(self) -> Path | None:
        return self.worker.log

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
        return self.worker.pool_pids()


@contextlib.contextmanager
def running_service(
    redis_server: RedisServer,
    logs: Path,
    *,
    quotas: Mapping[str, int | float] | None = None,
    **settings: str,
) -> Iterator[Service]:
    """A worker and the API on their own key prefix, with FAST leases and `settings`
    (DESCENT_* variables) on top, and a tenant (TENANT_NAME, with `quotas` of its own)
    whose key the client sends; both stopped on the way out."""
    prefix = f"e2e-{uuid.uuid4().hex}"
    redis_url = redis_server.url_for(E2E_DB)
    variables = {**FAST, "DESCENT_KEY_PREFIX": prefix, **settings}
    env = stack_env(redis_url, **variables)
    worker = start_worker(env, name=f"e2e-{prefix[4:12]}", log=logs / "worker.log",
                          args=["--without-mingle", "--without-gossip"])
    api: Api | None = None
    try:
        api = start_api(env, log=logs / "api.log", args=["--no-access-log"])
        worker.wait_online(60)
        api.wait_ready(60, watch=[worker])
        service_settings = Settings(
            redis_url=redis_url, key_prefix=prefix, lease_seconds=3, heartbeat_seconds=0.5,
            reaper_interval_seconds=1,
        )
        store = JobStore.from_settings(service_settings)
        api_key = make_tenant(env, TENANT_NAME, **(quotas or {}))
        with httpx.Client(base_url=api.url, timeout=30, trust_env=False,
                          headers=bearer(api_key)) as client:
            me = client.get("/v1/me")
            assert me.status_code == 200, me.text
            tenant_id = me.json()["tenant"]["id"]
            yield Service(service_settings, client, store, worker, api, env, tenant_id)
        store.close()
    finally:
        if api is not None:
            api.stop()
        worker.stop(timeout=20)


@pytest.fixture(scope="session")
def service(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    # A worker that gets the message of a job whose lease another holds waits that long
    # for the lease to lapse (worker.runner's _take_lease: lease + heartbeat, 3.5 s here);
    # the reaper re-sends a queued job's message only after a longer time, so that the
    # tests of lost messages see a message dropped before its job gets another one.
    with running_service(redis_server, tmp_path_factory.mktemp("service"),
                         DESCENT_QUEUED_REQUEUE_SECONDS=str(QUEUED_REQUEUE_SECONDS)) as running:
        yield running
