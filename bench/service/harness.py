"""The running service (redis, API, workers) and its job helpers; the run's plan and workload.

The processes come from the shared dev harness (scripts.stack: a private redis-server, the
API under uvicorn, Celery workers); HTTP goes through httpx.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.settings import Settings
from app.store.jobs import JobStore
from app.store.leases import LeaseHolder
from app.store.queue import QUEUE, broker_prefix, queue_key
from app.store.registry import WorkerRegistry
from bench.service.load import HAVE_PSUTIL, process_cpu, process_status
from bench.service.log import log
from scripts.stack import (
    Api,
    RedisServer,
    Worker,
    bearer,
    make_tenant,
    stack_env,
    start_api,
    start_redis,
    start_worker,
    wait_for,
)

TERMINAL = ("succeeded", "failed", "cancelled")


def _answers(url: str) -> bool:
    """Whether the API at `url` answers /healthz with 200."""
    try:
        return httpx.get(f"{url}/healthz", timeout=5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
HIDDEN = [50]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
JOB_TIMEOUT = 120.0
QUEUED_TIMEOUT = 30.0  # an idle worker picks a job up in ms: longer means it was lost
# Lease, heartbeat and reaper timing stay at their defaults in every child.
DEFAULTED = ("DESCENT_LEASE_SECONDS", "DESCENT_HEARTBEAT_SECONDS",
             "DESCENT_REAPER_INTERVAL_SECONDS", "DESCENT_WORKER_CONCURRENCY")

# The benchmark's one tenant: quotas that never hold a job back (every job is sent to the
# workers when submitted, as the measurements assume) nor refuse a burst of submissions.
TENANT_QUOTAS = {"max_running_jobs": 64, "submissions_per_minute": 100_000,
                 "max_active_jobs": 100_000}

Row = tuple[str, str, str, str]  # measure, value, target, verdict


def make_bench_tenant(env: dict[str, str], name: str = "bench") -> str:
    """A tenant with TENANT_QUOTAS on the stack of `env`; its API key."""
    return make_tenant(env, name, **TENANT_QUOTAS)


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to run (normal vs --quick)."""

    overhead_rounds: int
    overhead_epochs: int
    latency_jobs: int
    scaling_jobs: int
    scaling_epochs: int
    scaling_order: tuple[int, ...]
    raw_order: tuple[int, ...]
    pollers: int
    poll_seconds: float
    quiet_wait: float  # how long to wait at the start for other processes to calm down
    recovery_rounds: int
    auth_checks: int
    burst_submissions: int
    followers: int
    quick: bool = False
    sweep_submits: int = 20  # 64-trial sweeps submitted, for the submit latency
    sweep_reads: int = 200  # leaderboard reads of each timed sweep


NORMAL = Plan(10, 5, 20, 8, 2, (1, 2, 1, 2), (1, 2, 1, 2), 100, 10.0, 45.0, 3, 3000, 500, 200)
QUICK = Plan(2, 2, 8, 4, 1, (1, 2), (1, 2), 100, 3.0, 6.0, 1, 500, 100, 50, quick=True,
             sweep_submits=5, sweep_reads=50)


@dataclass(frozen=True)
class Workload:
    """The training jobs: Fashion-MNIST when it is there, else digits for longer."""

    dataset: str
    overhead_epochs: int
    scaling_epochs: int

    @property
    def features(self) -> int:
        return 784 if self.dataset == "fashion-mnist" else 64


def job_spec(dataset: str, epochs: int, **extra: Any) -> dict[str, Any]:
    return {"dataset": dataset, "hidden_sizes": HIDDEN, "epochs": epochs, **extra}


# --------------------------------------------------------------------------- the stack


class Stack:
    """A private redis-server, the API (uvicorn, 1 process), at most one Celery worker,
    a tenant (TENANT_QUOTAS) and an httpx client with its key, and the store's two roles
    for in-process work."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"bench-{uuid.uuid4().hex[:12]}"
        self.redis: RedisServer | None = None
        self.api: Api | None = None
        self.worker: Worker | None = None
        self.concurrency = 0
        self.logs: list[Path] = []
        self.env: dict[str, str] = {}
        self.api_key = ""
        self.tenant_id = ""  # the owner of every job of the benchmark
        self._http: httpx.Client | None = None
        self._store: JobStore | None = None
        self._holder: LeaseHolder | None = None
        self._local: tuple[JobStore, LeaseHolder] | None = None
        self._settings: Settings | None = None

    # -- parts, once started

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None, "the stack is not started"
        return self._http

    @property
    def store(self) -> JobStore:
        assert self._store is not None, "the stack is not started"
        return self._store

    @property
    def holder(self) -> LeaseHolder:
        assert self._holder is not None, "the stack is not started"
        return self._holder

    @property
    def local_holder(self) -> LeaseHolder:
        """The worker's role for the jobs this process runs itself (create_local_job)."""
        assert self._local is not None, "the stack is not started"
        return self._local[1]

    @property
    def settings(self) -> Settings:
        """What the workers run with (defaults, this Redis and prefix): for in-process runs."""
        assert self._settings is not None, "the stack is not started"
        return self._settings

    def registry(self) -> WorkerRegistry:
        return WorkerRegistry(self.store.client, self.prefix)

    # -- start and stop

    def start(self) -> None:
        # Its log is not scanned for trouble: redis-server warns about the host's settings.
        self.redis = start_redis(log=self.workdir / "redis.log")
        self.env = stack_env(self.redis.url, DESCENT_KEY_PREFIX=self.prefix)
        for name in DEFAULTED:
            self.env.pop(name, None)
        self._settings = Settings(redis_url=self.redis.url, key_prefix=self.prefix)
        self._store = JobStore.from_settings(self._settings)
        self._holder = LeaseHolder.from_settings(self._settings)
        # Jobs this process runs itself live under a key prefix of their own, whose broker
        # queue no worker reads: store.create_job sends a job's message in the same step,
        # and a worker must neither run those jobs nor wait on their leases.
        local = self._settings.model_copy(update={"key_prefix": f"{self.prefix}-local"})
        self._local = (JobStore.from_settings(local, self._store.client),
                       LeaseHolder.from_settings(local, self._store.client))
        self.api_key = make_bench_tenant(self.env)
        self.api = start_api(self.env, log=self._log("api.log"))
        self._http = httpx.Client(base_url=self.api.url, timeout=30, trust_env=False,
                                  headers=bearer(self.api_key))
        wait_for(self._healthy, START_TIMEOUT, "the API to answer /healthz", watch=[self.api])
        me = self.http.get("/v1/me")
        me.raise_for_status()
        self.tenant_id = me.json()["tenant"]["id"]

    @contextlib.contextmanager
    def more_api(self, processes: int) -> Iterator[Api]:
        """A second API on the same store with `processes` uvicorn processes
        (WEB_CONCURRENCY), for as long as the block runs."""
        api = start_api({**self.env, "WEB_CONCURRENCY": str(processes)},
                        log=self._log(f"api-{processes}.log"))
        try:
            wait_for(lambda: _answers(api.url), START_TIMEOUT,
                     f"the {processes}-process API to answer /healthz", watch=[api])
            yield api
        finally:
            api.stop()

    def _log(self, name: str) -> Path:
        path = self.workdir / name
        self.logs.append(path)
        return path

    def _healthy(self) -> bool:
        assert self.api is not None
        return _answers(self.api.url)

    def start_worker(self, concurrency: int, wait: bool = True) -> Worker:
        """Stop the current worker (warm shutdown) and start one of `concurrency` pool
        processes; with `wait`, until it is in the registry with its whole pool."""
        self.stop_worker()
        tag = f"c{concurrency}-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        worker = start_worker(
            {**self.env, "DESCENT_WORKER_CONCURRENCY": str(concurrency)},
            name=f"bench-{tag}", log=self._log(f"worker-{tag}.log"),
            # The harness logs at INFO: a worker that never takes a job shows how far it got.
            args=["--without-mingle", "--without-gossip"],
        )
        self.worker, self.concurrency = worker, concurrency
        if wait:
            registry = self.registry()
            wait_for(lambda: self.worker_online(registry), START_TIMEOUT,
                     f"{worker.name} to come online", watch=[worker])
            log(f"worker concurrency={concurrency} online in "
                f"{time.monotonic() - started:.1f} s")
        return worker

    def worker_online(self, registry: WorkerRegistry) -> bool:
        """The current worker is in the registry and its whole pool has started."""
        worker = self.worker
        if worker is None or worker.node not in registry.alive(10.0):
            return False
        return len(self.pool_pids()) >= self.concurrency

    def pool_pids(self) -> list[int]:
        if self.worker is None:
            return []
        try:
            return self.worker.pool_pids()
        except OSError:  # it is gone
            return []

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(STOP_TIMEOUT)
            self.worker = None

    def kill_worker(self) -> None:
        """SIGKILL the whole worker at once: main process and pool (its process group)."""
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.stop(STOP_TIMEOUT)  # reaps it
            self.worker = None

    def stop(self) -> None:
        for step in (self.stop_worker, self._stop_api, self._stop_redis):
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                print(f"cleanup: {step.__name__} failed: {exc!r}", flush=True)

    def _stop_api(self) -> None:
        if self._http is not None:
            self._http.close()
        for role in (self._store, self._holder):
            if role is not None:
                role.close()
        if self.api is not None:
            self.api.stop()

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def create_local_job(self, spec: dict[str, Any], name: str | None = None) -> str:
        """A queued job for this process to run (JobRunner on local_holder), not for the
        workers: its message, which nobody reads, is dropped at once. Its id."""
        assert self._local is not None, "the stack is not started"
        store = self._local[0]
        job, _ = store.create_job(spec, tenant=self.tenant_id, name=name)
        store.client.delete(store.keys.queue)
        job_id: str = job["id"]
        return job_id

    # -- jobs over HTTP

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec)
        if response.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs -> {response.status_code}: {response.text}")
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    def cancel(self, job_id: str) -> None:
        """Cancel and wait until it has ended (whatever way)."""
        if self.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202:
            self.wait_terminal(job_id)

    def wait_terminal(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(0.05)

    def wait(
        self, job_id: str, interval: float, quiet: float = 0.0
    ) -> tuple[dict[str, Any], float | None, float]:
        """Poll until it has succeeded: (job, monotonic time first seen not queued, when
        seen terminal).

        `quiet`: seconds to sleep before the first poll, so that polling does not compete
        with the job for the CPU while it surely still runs.
        """
        started = time.monotonic()
        time.sleep(quiet)
        deadline = started + JOB_TIMEOUT
        seen_started: float | None = None
        while True:
            job = self.job(job_id)
            now = time.monotonic()
            if job["status"] == "queued" and now - started > QUEUED_TIMEOUT:
                raise RuntimeError(f"job {job_id} still queued after {QUEUED_TIMEOUT:g} s: "
                                   f"{self.queue_state()}")
            if seen_started is None and job["status"] != "queued":
                seen_started = now
            if job["status"] in TERMINAL:
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
                return job, seen_started, now
            if now > deadline or (self.worker is not None and not self.worker.running()):
                raise RuntimeError(f"job {job_id} still {job['status']} (worker log: "
                                   f"{self.worker.log if self.worker else None})")
            time.sleep(interval)

    def queue_state(self) -> str:
        """What the broker holds, to tell a lost message from a stuck worker."""
        client = self.store.client
        key, broker = queue_key(self.prefix), broker_prefix(self.prefix)
        pool = []
        for pid in self.pool_pids():
            pool.append(f"pid {pid} {process_status(pid)} cpu {process_cpu(pid):.2f} s")
        # kombu routes a message that matches no binding to its dead-letter list.
        return (f"broker list {key!r} holds {client.llen(key)} message(s), "
                f"{client.hlen(broker + 'unacked')} unacked, "
                f"{client.llen(broker + 'ae.undeliver')} undeliverable; bindings "
                f"{sorted(client.smembers(broker + '_kombu.binding.' + QUEUE))}; "
                f"live workers {self.registry().alive(10.0)}; pool {pool}; worker log "
                f"{self.worker.log if self.worker else None}")

    def warm_pool(self, spec: dict[str, Any]) -> None:
        """Each pool child runs a job first, so that every one has the dataset cached."""
        busy: list[float] = []
        for _ in range(3):
            jobs = [self.submit(spec) for _ in range(self.concurrency)]
            for job in jobs:
                self.wait(job["id"], 0.05)
            if not HAVE_PSUTIL:
                return  # no per-process CPU to check: trust the three rounds
            busy = [process_cpu(pid) for pid in self.pool_pids()]
            if len(busy) >= self.concurrency and min(busy) > 0.3:
                return
        log(f"warning: not every pool child ran a warm-up job (CPU s per child: {busy})")


def scan_logs(paths: list[Path], expected: tuple[str, ...] = ()) -> list[str]:
    """Lines of the children's logs that look like trouble (but not the `expected` ones)."""
    found = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(text in line for text in expected):
                continue
            if any(word in line for word in ("ERROR", "Traceback", "CRITICAL", "WARNING")):
                found.append(f"{path.name}: {line[:200]}")
    return found

