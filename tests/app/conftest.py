"""API fixtures: the app on the private Redis, its TestClient (with a tenant's key), the
broker queue, a fake worker."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings
from app.store.jobs import JobStore
from app.store.queue import TRAIN_TASK, queue_key
from app.store.tenants import TenantStore
from tests.roles import TENANT

MakeClient = Callable[..., TestClient]


ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def tenants(redis_client: redis.Redis, key_prefix: str) -> TenantStore:
    return TenantStore(redis_client, prefix=key_prefix)


@pytest.fixture
def api_key(tenants: TenantStore) -> str:
    """The key of this test's tenant "alice" (id tests.roles.TENANT), which `client` sends."""
    return tenants.create_tenant("alice", tenant_id=TENANT)[1]


@pytest.fixture
def make_client(redis_url: str, key_prefix: str, api_key: str) -> Iterator[MakeClient]:
    """Build apps on the private Redis (under this test's prefix) with Settings overrides,
    sending alice's key (and with an admin token set).

    Each TestClient is entered, so the lifespan runs (stores, registry), and is closed
    when the test ends.
    """
    with ExitStack() as stack:

        def make(*, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
            values: dict[str, Any] = {
                "redis_url": redis_url, "key_prefix": key_prefix, "admin_token": ADMIN_TOKEN,
            }
            settings = Settings(**{**values, **overrides})
            client = stack.enter_context(TestClient(
                create_app(settings), raise_server_exceptions=raise_server_exceptions
            ))
            client.headers["Authorization"] = f"Bearer {api_key}"
            return client

        yield make


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def enqueued_task_args(client: redis.Redis, key_prefix: str) -> list[list[Any]]:
    """The args of every train task waiting in the broker queue.

    Each message is JSON with a base64 body of [args, kwargs, embed]. The list is shared by
    every test on this server, so callers pick their own job ids out of it; nothing is
    ever removed.
    """
    found = []
    # Kombu's Redis transport keeps a queue's messages in a list named after the queue,
    # under the deployment's broker prefix: the workers read this list.
    for raw in client.lrange(queue_key(key_prefix), 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] != TRAIN_TASK:
            continue
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        found.append(args)
    return found


@pytest.fixture
def times_enqueued(redis_client: redis.Redis, key_prefix: str) -> Callable[[str], int]:
    """How many train-task messages for this job id sit in the broker queue."""

    def count(job_id: str) -> int:
        return sum(args == [job_id] for args in enqueued_task_args(redis_client, key_prefix))

    return count


class FakeWorker:
    """Drives the JobStore the way worker/ does, so the API can be read mid-run."""

    token = "fake-worker"

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.next_iteration: dict[str, int] = {}

    def start(self, job_id: str) -> None:
        assert self.store.acquire_lease(job_id, self.token, 60)
        assert self.store.start_attempt(job_id, self.token) == 1
        self.next_iteration[job_id] = 1

    def losses(self, job_id: str, values: list[float] | np.ndarray) -> bool:
        """Append the losses of the next iterations; return cancel_requested."""
        first = self.next_iteration[job_id]
        last = first + len(values) - 1
        progress = {"epoch": 1, "epochs": 2, "iteration": last, "iterations": 2 * last,
                    "fraction": 0.5, "eta_seconds": 1.0}
        self.next_iteration[job_id] = last + 1
        return self.store.record_iterations(job_id, self.token, first, np.asarray(values),
                                            progress)

    def epoch(self, job_id: str, row: dict[str, Any]) -> bool:
        return self.store.record_epoch(job_id, self.token, row)

    def finish(self, job_id: str, status: str, **kwargs: Any) -> None:
        assert self.store.finish(job_id, status, token=self.token, **kwargs)


@pytest.fixture
def worker(store: JobStore) -> FakeWorker:
    return FakeWorker(store)
