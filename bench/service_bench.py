"""Service benchmark: overhead, pickup latency, worker scaling and curve polling, side by side.

    python bench/service_bench.py [--quick]

Starts its own redis-server, Celery worker(s) and API (uvicorn, 1 process) on 127.0.0.1,
measures in one run, prints the figures next to their targets, and stops everything it
started (also on Ctrl-C). Normal mode takes about 3 minutes, --quick under a minute.

1. Service overhead: one job through HTTP + Celery + Redis vs the same `trainer.train`
   call in this process, interleaved rounds, medians. Target: <= 3 % added.
2. Submit-to-running latency with an idle worker (server clocks and client-observed).
3. Jobs/hour with one worker process vs two (concurrency 1 vs 2), interleaved, plus a
   raw-CPU control: the same training in 1 vs 2 plain processes. Target: >= 1.8x.
4. Curve polling: 100 concurrent incremental pollers of a 100,000-iteration curve that a
   writer thread keeps extending.
"""

from __future__ import annotations

import os

# One BLAS thread everywhere: set before NumPy loads, here and (inherited) in every child.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import multiprocessing as mp  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from app.api.schemas import JobSpec  # noqa: E402
from app.local_redis import LocalRedis, free_port, start_local_redis  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.jobs import JobStore  # noqa: E402
from app.store.leases import LeaseHolder  # noqa: E402
from app.store.queue import QUEUE, queue_key  # noqa: E402
from app.store.registry import WorkerRegistry  # noqa: E402
from trainer import TrainConfig, dataset_info, load_dataset, train  # noqa: E402
from worker.runner import JobRunner  # noqa: E402

HOST = "127.0.0.1"
TERMINAL = ("succeeded", "failed", "cancelled")
HIDDEN = [50]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
JOB_TIMEOUT = 120.0
PACED_PERIOD = 1.0  # seconds between two polls of one paced poller
QUEUED_TIMEOUT = 30.0  # an idle worker picks a job up in ms: longer means it was lost
DEFAULTED = ("DESCENT_LEASE_SECONDS", "DESCENT_HEARTBEAT_SECONDS",
             "DESCENT_REAPER_INTERVAL_SECONDS")
T0 = time.monotonic()


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


NORMAL = Plan(10, 5, 20, 8, 2, (1, 2, 1, 2), (1, 2, 1, 2), 100, 10.0, 45.0, 3)
QUICK = Plan(2, 2, 8, 4, 1, (1, 2), (1, 2), 100, 3.0, 6.0, 1)


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def parse_time(stamp: str) -> float:
    """ISO 8601 UTC (millisecond precision) -> unix seconds."""
    return datetime.fromisoformat(stamp).timestamp()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def median_ci(values: list[float], level: float = 0.9) -> tuple[float, float]:
    """Bootstrap interval of the median: how far the noise lets a median of these move."""
    data = np.asarray(values, dtype=float)
    picks = np.random.default_rng(3).integers(0, len(data), (2000, len(data)))
    tail = 50 * (1 - level)
    low, high = np.percentile(np.median(data[picks], axis=1), [tail, 100 - tail])
    return float(low), float(high)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (parent pid, CPU seconds including its reaped children, CPU seconds of its
    own), for every process."""
    table = {}
    hz = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = [int(v) for v in fields[11:15]]
        table[int(name)] = (int(fields[1]), sum(ticks) / hz, sum(ticks[:2]) / hz)
    return table


def our_tree(table: dict[int, tuple[int, float, float]]) -> set[int]:
    """This process and its descendants."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = set(), [os.getpid()]
    while frontier:
        pid = frontier.pop()
        if pid not in tree:
            tree.add(pid)
            frontier.extend(children.get(pid, []))
    return tree


def command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:70] or "?"


class CpuMeter:
    """How busy the machine was besides us: other processes (named) and hypervisor steal.

    Another benchmark on a 2-core machine halves what two workers can get, so every
    phase says how much CPU was left to it.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, dict[int, tuple[int, float, float]]]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = values
        hz = os.sysconf("SC_CLK_TCK")
        return (time.monotonic(), (user + nice + system + irq + softirq) / hz, steal / hz,
                process_table())

    def measure(self) -> dict[str, Any]:
        now, busy, steal, table = self._sample()
        then, busy0, steal0, table0 = self.start
        wall = max(now - then, 1e-9)
        tree = our_tree(table) | (our_tree(table0) & table.keys())
        ours = sum(table[p][1] for p in tree) - sum(
            table0[p][1] for p in our_tree(table0))
        others = {pid: (cpu - table0.get(pid, (0, 0.0, 0.0))[2]) / wall
                  for pid, (_, _, cpu) in table.items() if pid not in tree}
        top = sorted(others.items(), key=lambda item: -item[1])[:2]
        return {
            "ours": ours / wall,
            "others": max(busy - busy0 - ours, 0.0) / wall,
            "steal": (steal - steal0) / wall,
            "top": [(pid, share, command_of(pid)) for pid, share in top if share >= 0.1],
        }

    def summary(self) -> str:
        m = self.measure()
        text = (f"ours {m['ours']:.2f}, other processes {m['others']:.2f}, "
                f"steal {m['steal']:.2f}")
        if m["top"]:
            text += " (" + ", ".join(f"pid {pid} {share:.2f}: {cmd}"
                                     for pid, share, cmd in m["top"]) + ")"
        return text


def wait_for_quiet(limit: float) -> str | None:
    """Wait (up to `limit` s) until other processes use < 0.3 cores; else say who is busy."""
    deadline = time.monotonic() + limit
    while True:
        meter = CpuMeter()
        time.sleep(2.0)
        m = meter.measure()
        if m["others"] < 0.3:
            return None
        busy = (f"other processes use {m['others']:.2f} of {os.cpu_count()} cores: "
                + ", ".join(f"pid {pid} {share:.2f} {cmd}" for pid, share, cmd in m["top"]))
        if time.monotonic() > deadline:
            return busy
        log(f"machine busy ({busy}); waiting up to {deadline - time.monotonic():.0f} s more")


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Processes started meanwhile keep SIGINT blocked: Ctrl-C at the terminal reaches only
    us, and we stop them in order. Needed for the multiprocessing children, which share our
    process group (redis-server and the Child commands each have a group of their own)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    """A command in its own process group, its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, command: list[str], env: dict[str, str], log: Path) -> Child:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, process_group=0,
            )
        return cls(name, process, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        """Whether the leader ended; it stays a zombie so that its group id stays ours."""
        if self.process.returncode is not None:
            return True
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None and info.si_pid != 0

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the leader (a warm shutdown for Celery), then SIGKILL the whole group."""
        if self.process.returncode is not None:
            return
        if not self.exited():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


class Cluster:
    """Private redis-server + API + (at most one) Celery worker, and an HTTP client."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"bench-{uuid.uuid4().hex[:12]}"
        self.redis: LocalRedis | None = None
        self.api: Child | None = None
        self.worker: Child | None = None
        self.concurrency = 0
        self.tag = ""
        self.logs: list[Path] = []
        self.env: dict[str, str] = {}
        self.port = 0
        self.http: httpx.Client | None = None
        self.store: JobStore | None = None
        self.holder: LeaseHolder | None = None
        self.settings: Settings | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def job_store(self) -> JobStore:
        assert self.store is not None
        return self.store

    def start(self) -> None:
        self.redis = start_local_redis()  # in its own process group, like the children
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "DESCENT_KEY_PREFIX": self.prefix,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        for name in DEFAULTED:  # lease, heartbeat and reaper timing at their defaults
            self.env.pop(name, None)
        # The workers' settings too (defaults plus these two): for the in-process runner.
        self.settings = Settings(redis_url=self.redis.url, key_prefix=self.prefix)
        self.store = JobStore.from_settings(self.settings)
        self.holder = LeaseHolder.from_settings(self.settings)
        self.port = free_port()
        log_path = self.workdir / "api.log"
        self.logs.append(log_path)
        command = [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", HOST,
                   "--port", str(self.port)]
        self.api = Child.start("api", command, self.env, log_path)
        self.http = httpx.Client(base_url=self.base_url, timeout=30, trust_env=False)
        self._wait(lambda: self._healthy(), "the API to answer /healthz", [self.api])

    def _healthy(self) -> bool:
        try:
            return self.client().get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, ready: Callable[[], Any], what: str, children: list[Child]) -> Any:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            value = ready()
            if value:
                return value
            for child in children:
                if child.exited():
                    raise RuntimeError(f"{child.name} exited while waiting for {what}; "
                                       f"see {child.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {START_TIMEOUT:.0f} s waiting for {what}")
            time.sleep(0.05)

    def start_worker(self, concurrency: int, wait: bool = True) -> Child:
        """Start a worker (after stopping the current one); with `wait`, until it is online
        with its whole pool."""
        self.stop_worker()
        tag = f"c{concurrency}-{uuid.uuid4().hex[:6]}"
        log_path = self.workdir / f"worker-{tag}.log"
        self.logs.append(log_path)
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
            "--pool=prefork", "--loglevel=WARNING",
            "--without-mingle", "--without-gossip", "-n", f"bench-{tag}@%h",
        ]
        started = time.monotonic()
        env = {**self.env, "DESCENT_WORKER_CONCURRENCY": str(concurrency)}
        worker = Child.start(f"worker {tag}", command, env, log_path)
        self.worker, self.concurrency = worker, concurrency
        self.tag = tag
        if not wait:
            return worker
        registry = WorkerRegistry(self.job_store().client, self.prefix)
        self._wait(lambda: self.worker_online(registry), f"worker {tag} to come online",
                   [worker])
        log(f"worker concurrency={concurrency} online in {time.monotonic() - started:.1f} s")
        return worker

    def worker_online(self, registry: WorkerRegistry) -> bool:
        """The current worker is in the registry and its whole pool has started."""
        if self.worker is None:
            return False
        named = any(name.startswith(f"bench-{self.tag}@") for name in registry.alive(10.0))
        return named and len(children_of(self.worker.pid)) >= self.concurrency

    def kill_worker(self) -> None:
        """SIGKILL the whole worker at once: main process and pool (its process group)."""
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.process.wait()
            self.worker = None

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def stop(self) -> None:
        for step in (self.stop_worker, self._stop_api, self._stop_redis):
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                print(f"cleanup: {step.__name__} failed: {exc!r}", flush=True)

    def _stop_api(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.store is not None:
            self.store.close()
        if self.holder is not None:
            self.holder.close()
        if self.api is not None:
            self.api.stop()

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    # -- jobs over HTTP

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.client().post("/v1/jobs", json=spec)
        if response.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs -> {response.status_code}: {response.text}")
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client().get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    def wait(
        self, job_id: str, interval: float, quiet: float = 0.0
    ) -> tuple[dict[str, Any], float | None, float]:
        """Poll until terminal: (job, monotonic time first seen not queued, when terminal).

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
            if now > deadline or (self.worker is not None and self.worker.exited()):
                raise RuntimeError(f"job {job_id} still {job['status']} (worker log: "
                                   f"{self.worker.log if self.worker else None})")
            time.sleep(interval)

    def wait_terminal(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(0.05)

    def queue_state(self) -> str:
        """What the broker holds, to tell a lost message from a stuck worker."""
        client = self.job_store().client
        workers = WorkerRegistry(client, self.prefix).alive(10.0)
        pool = []
        for pid in children_of(self.worker.pid) if self.worker else []:
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                pool.append(f"pid {pid} state {state} cpu {cpu_seconds(pid):.2f} s")
        # kombu routes a message that matches no binding to its dead-letter list.
        key, broker = queue_key(self.prefix), queue_key(self.prefix)[: -len(QUEUE)]
        return (f"broker list {key!r} holds {client.llen(key)} message(s), "
                f"{client.hlen(broker + 'unacked')} unacked, "
                f"{client.llen(broker + 'ae.undeliver')} undeliverable; "
                f"bindings {sorted(client.smembers(broker + '_kombu.binding.' + QUEUE))}; "
                f"live workers {workers}; pool {pool}; worker log "
                f"{self.worker.log if self.worker else None}")

    def warm_pool(self, spec: dict[str, Any]) -> None:
        """Each pool child runs a job first, so that every one has the dataset cached."""
        assert self.worker is not None
        for _ in range(3):
            jobs = [self.submit(spec) for _ in range(self.concurrency)]
            for job in jobs:
                self.wait(job["id"], 0.05)
            busy = [cpu_seconds(pid) for pid in children_of(self.worker.pid)]
            if len(busy) >= self.concurrency and min(busy) > 0.3:
                return
        log(f"warning: not every pool child ran a warm-up job (CPU s per child: {busy})")


def job_spec(dataset: str, epochs: int, **extra: Any) -> dict[str, Any]:
    return {"dataset": dataset, "hidden_sizes": HIDDEN, "epochs": epochs, **extra}


def job_config(epochs: int) -> TrainConfig:
    return TrainConfig(hidden_sizes=tuple(HIDDEN), epochs=epochs)


def run_seconds(job: dict[str, Any]) -> float:
    return parse_time(job["finished_at"]) - parse_time(job["started_at"])


# --------------------------------------------------------------------------- 1. overhead


def run_in_process(cluster: Cluster, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The worker's own code path (JobRunner: lease, store writes, checkpoints) without
    Celery, in this process: (wall seconds, the finished job)."""
    store = cluster.job_store()
    assert cluster.settings is not None
    job, _ = store.create_job(JobSpec.model_validate(spec).stored_spec(), name=None)
    started = time.perf_counter()
    assert cluster.holder is not None
    outcome = JobRunner(cluster.holder, cluster.settings, job["id"]).run()
    seconds = time.perf_counter() - started
    if outcome != "succeeded":
        raise RuntimeError(f"in-process JobRunner: {outcome}")
    finished = store.get_job(job["id"])
    assert finished is not None
    return seconds, finished


def bench_overhead(cluster: Cluster, dataset: str, plan: Plan, epochs: int) -> dict[str, Any]:
    data = load_dataset(dataset)
    config, spec = job_config(epochs), job_spec(dataset, epochs)
    train(config, data)  # warm all three: caches, the runner's and the worker's dataset
    run_in_process(cluster, spec)
    cluster.wait(cluster.submit(spec)["id"], 0.05)
    direct, runner, own, wall, queued = [], [], [], [], []

    def run_direct() -> None:
        started = time.perf_counter()
        train(config, data)
        direct.append(time.perf_counter() - started)

    def run_runner() -> None:
        runner.append(run_in_process(cluster, spec)[0])

    def run_service() -> None:
        submitted = time.monotonic()
        quiet = 0.8 * min(direct) if direct else 0.0
        job, _, done = cluster.wait(cluster.submit(spec)["id"], 0.02, quiet=quiet)
        wall.append(done - submitted)
        own.append(run_seconds(job))
        queued.append(parse_time(job["started_at"]) - parse_time(job["created_at"]))

    variants = [run_direct, run_runner, run_service]
    for r in range(plan.overhead_rounds):
        for k in range(len(variants)):  # rotate the order: no variant always follows another
            variants[(r + k) % len(variants)]()
        log(f"overhead round {r + 1}/{plan.overhead_rounds}: direct {direct[-1]:.3f} s, "
            f"in-process JobRunner {runner[-1]:.3f} s, job started->finished {own[-1]:.3f} s, "
            f"submit->succeeded {wall[-1]:.3f} s")
    med = statistics.median

    def paired(values: list[float]) -> float:
        return med(v / d for v, d in zip(values, direct, strict=True))

    def paired_ci(values: list[float]) -> tuple[float, float] | None:
        if len(values) < 5:  # too few rounds for the interval to mean anything
            return None
        return median_ci([v / d for v, d in zip(values, direct, strict=True)])

    return {
        "direct": med(direct), "runner": med(runner), "own": med(own), "wall": med(wall),
        "queued": med(queued),
        "runner_ratio": med(runner) / med(direct), "own_ratio": med(own) / med(direct),
        "wall_ratio": med(wall) / med(direct),
        "paired_runner": paired(runner), "paired_own": paired(own), "paired_wall": paired(wall),
        "ci_own": paired_ci(own), "ci_wall": paired_ci(wall),
        "spread": {name: (min(v), max(v)) for name, v in
                   (("direct", direct), ("runner", runner), ("job", own))},
    }


# --------------------------------------------------------------------------- 2. latency


def bench_latency(cluster: Cluster, n_jobs: int) -> dict[str, Any]:
    spec = {"dataset": "spiral", "hidden_sizes": [16], "epochs": 20, "batch_size": 50}
    cluster.wait(cluster.submit(spec)["id"], 0.05)  # warm-up
    server, client, post, run = [], [], [], []
    for _ in range(n_jobs):
        time.sleep(0.2)  # the worker is idle (its last job's writes are done)
        sent = time.monotonic()
        job_id = cluster.submit(spec)["id"]
        post.append(time.monotonic() - sent)
        job, seen, _ = cluster.wait(job_id, 0.005)
        assert seen is not None
        client.append(seen - sent)
        server.append(parse_time(job["started_at"]) - parse_time(job["created_at"]))
        run.append(run_seconds(job))
    ms = 1000.0
    result = {
        key: (pct(values, 50) * ms, pct(values, 95) * ms)
        for key, values in (("server", server), ("client", client), ("post", post), ("run", run))
    }
    log(f"latency: {n_jobs} jobs, created->started median {result['server'][0]:.1f} ms, "
        f"p95 {result['server'][1]:.1f} ms")
    return result


# --------------------------------------------------------------------------- 3. scaling


def service_batch(cluster: Cluster, spec: dict[str, Any], n_jobs: int) -> dict[str, float]:
    ids = [cluster.submit(spec)["id"] for _ in range(n_jobs)]
    jobs = [cluster.wait(job_id, 0.1)[0] for job_id in ids]
    first = min(parse_time(job["created_at"]) for job in jobs)
    last = max(parse_time(job["finished_at"]) for job in jobs)
    span = last - first
    return {"span": span, "per_hour": n_jobs * 3600 / span,
            "run": statistics.median(run_seconds(job) for job in jobs)}


def _raw_child(dataset: str, epochs: int, commands: Any, results: Any) -> None:
    """A plain process: load the data once, then run `n` trainings per command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    data = load_dataset(dataset)
    config = job_config(epochs)
    train(config, data)
    results.put(("ready", 0.0, 0.0))
    while True:
        n = commands.get(timeout=600)
        if n is None:
            return
        started = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        for _ in range(n):
            train(config, data)
        results.put(("done", started, time.monotonic()))


class RawPool:
    """Two plain processes with the dataset loaded, to run trainings on command."""

    def __init__(self, dataset: str, epochs: int) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(2)]
        self.processes = [
            ctx.Process(target=_raw_child, args=(dataset, epochs, q, self.results), daemon=True)
            for q in self.commands
        ]
        with sigint_blocked():
            for process in self.processes:
                process.start()
        for _ in self.processes:
            self.results.get(timeout=START_TIMEOUT)

    def run(self, processes: int, n_jobs: int) -> dict[str, float]:
        share = n_jobs // processes
        for q in self.commands[:processes]:
            q.put(share)
        done = [self.results.get(timeout=JOB_TIMEOUT * n_jobs) for _ in range(processes)]
        span = max(end for _, _, end in done) - min(start for _, start, _ in done)
        return {"span": span, "per_hour": share * processes * 3600 / span}

    def close(self) -> None:
        for q in self.commands:
            with contextlib.suppress(Exception):
                q.put(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


def bench_scaling(cluster: Cluster, dataset: str, plan: Plan, epochs: int) -> dict[str, Any]:
    spec = job_spec(dataset, epochs)
    warm = job_spec(dataset, 1)
    service: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for concurrency in plan.scaling_order:
        if cluster.worker is None or cluster.concurrency != concurrency:
            cluster.start_worker(concurrency)
            cluster.warm_pool(warm)
        result = service_batch(cluster, spec, plan.scaling_jobs)
        service[concurrency].append(result)
        log(f"service, concurrency {concurrency}: {plan.scaling_jobs} jobs in "
            f"{result['span']:.2f} s = {result['per_hour']:.0f} jobs/h "
            f"(median job {result['run']:.2f} s)")
    cluster.stop_worker()  # idle CPUs for the raw control
    raw: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    pool = RawPool(dataset, epochs)
    try:
        for processes in plan.raw_order:
            result = pool.run(processes, plan.scaling_jobs)
            raw[processes].append(result)
            log(f"raw, {processes} process(es): {plan.scaling_jobs} trainings in "
                f"{result['span']:.2f} s = {result['per_hour']:.0f} jobs/h")
    finally:
        pool.close()

    def rate(runs: list[dict[str, float]]) -> float:
        return statistics.median(run["per_hour"] for run in runs)

    return {
        "service": (rate(service[1]), rate(service[2])),
        "raw": (rate(raw[1]), rate(raw[2])),
        "service_ratio": rate(service[2]) / rate(service[1]),
        "raw_ratio": rate(raw[2]) / rate(raw[1]),
        "job_seconds": statistics.median(r["run"] for r in service[1]),
    }


# --------------------------------------------------------------------------- 4. polling


@dataclass
class PollStats:
    latencies: list[float] = field(default_factory=list)
    first_bytes: list[int] = field(default_factory=list)
    incremental_bytes: list[int] = field(default_factory=list)
    incremental_points: list[int] = field(default_factory=list)
    errors: int = 0


class CurveWriter(threading.Thread):
    """Simulates a running job: appends `chunk` iterations every `period` seconds."""

    def __init__(self, store: LeaseHolder, job_id: str, token: str, first: int) -> None:
        super().__init__(daemon=True)
        self.store, self.job_id, self.token, self.next = store, job_id, token, first
        self.stop_event = threading.Event()
        self.write_seconds: list[float] = []
        self.rng = np.random.default_rng(1)

    def append(self, n: int) -> None:
        losses = fake_losses(self.rng, self.next, n)
        last = self.next + n - 1
        progress = {"epoch": 0, "epochs": 1, "iteration": last, "iterations": None,
                    "fraction": 0.0, "eta_seconds": None}
        started = time.perf_counter()
        self.store.record_iterations(self.job_id, self.token, self.next, losses, progress)
        self.write_seconds.append(time.perf_counter() - started)
        self.next = last + 1

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            self.append(1000)


def fake_losses(rng: np.random.Generator, first: int, n: int) -> np.ndarray:
    steps = np.arange(first, first + n, dtype=np.float64)
    return (2.3 * np.exp(-steps / 20_000) + 0.2 + 0.05 * rng.standard_normal(n)).astype(
        np.float32)


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
NEXT = re.compile(rb'"next":(\d+)')


class RawHttp:
    """A bare keep-alive HTTP/1.1 GET over asyncio streams.

    httpx.AsyncClient was tried first: its connection pool scans every connection for every
    request (httpcore connection_pool._assign_requests_to_connections), so 100 pollers on
    one client burned a whole core in the client at ~50 requests/s and measured the client,
    not the API. This costs a small fraction of a millisecond per request.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str) -> bytes:
        """The body of a 200 answer; raises OSError or ValueError otherwise."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(head)
            if length is None:
                raise ValueError(f"no content-length in {head[:200]!r}")
            body = await reader.readexactly(int(length.group(1)))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            raise
        if not head.startswith(b"HTTP/1.1 200 "):
            raise ValueError(f"answer {head[:40]!r}")
        return body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def points_in(body: bytes) -> int:
    """How many iterations a curve body carries, without decoding the JSON."""
    start = body.index(b'"iterations":[') + len(b'"iterations":[')
    end = body.index(b"]", start)
    return 0 if end == start else body.count(b",", start, end) + 1


async def _pollers(
    port: int, path: str, pollers: int, seconds: float, period: float = 0.0
) -> PollStats:
    """`pollers` clients polling since=0, then since=next: as fast as they are answered
    (period 0), or each once per `period` seconds from a random phase."""
    stats = PollStats()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    rng = np.random.default_rng(2)

    async def poller(phase: float) -> None:
        client = RawHttp(HOST, port)
        since: int | None = None
        due = loop.time() + phase
        try:
            while loop.time() < deadline:
                if period:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    due += period
                started = time.perf_counter()
                try:
                    body = await client.get(f"{path}?since={since or 0}")
                    found = NEXT.search(body)
                    if found is None:
                        raise ValueError("no 'next' in the curve")
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    stats.errors += 1
                    await asyncio.sleep(0.05)
                    continue
                stats.latencies.append(time.perf_counter() - started)
                if since is None:
                    stats.first_bytes.append(len(body))
                else:
                    stats.incremental_bytes.append(len(body))
                    stats.incremental_points.append(points_in(body))
                since = int(found.group(1))
        finally:
            client.close()

    phases = rng.uniform(0, period, pollers) if period else np.zeros(pollers)
    await asyncio.gather(*(poller(float(phase)) for phase in phases))
    return stats


def bench_polling(cluster: Cluster, plan: Plan) -> dict[str, Any]:
    store = cluster.job_store()
    job, _ = store.create_job(job_spec("fashion-mnist", 1), name="bench curve")
    job_id, token = job["id"], uuid.uuid4().hex
    assert cluster.holder is not None
    holder = cluster.holder
    if not holder.acquire_lease(job_id, token, 3600) or holder.start_attempt(job_id, token) != 1:
        raise RuntimeError(f"could not start the simulated job {job_id}")
    writer = CurveWriter(holder, job_id, token, 1)
    for _ in range(10):
        writer.append(10_000)
    writer.write_seconds.clear()
    path = f"/v1/jobs/{job_id}/curve"
    client = cluster.client()
    started = time.perf_counter()
    full = client.get(path, params={"since": 0, "max_points": 100_000})
    full_seconds = time.perf_counter() - started
    full.raise_for_status()
    assert len(full.json()["iterations"]) == 100_000
    assert cluster.api is not None and cluster.redis is not None
    pids = {"api": cluster.api.pid, "redis": cluster.redis.process.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own_before, wall_before = time.process_time(), time.monotonic()
    writer.start()
    try:
        stats = asyncio.run(_pollers(cluster.port, path, plan.pollers, plan.poll_seconds))
        wall = time.monotonic() - wall_before
        cores = {name: (cpu_seconds(pid) - cpu_before[name]) / wall
                 for name, pid in pids.items()}
        cores["bench client+writer"] = (time.process_time() - own_before) / wall
        paced = asyncio.run(_pollers(cluster.port, path, plan.pollers, plan.poll_seconds,
                                     period=PACED_PERIOD))
    finally:
        writer.stop_event.set()
        writer.join(timeout=5)
    total = store.read_curve(job_id, since=0, max_points=1)
    holder.finish(job_id, "succeeded", token=token)
    requests = len(stats.latencies)
    return {
        "requests": requests,
        "rps": requests / wall,
        "p50": pct(stats.latencies, 50) * 1000,
        "p99": pct(stats.latencies, 99) * 1000,
        "errors": stats.errors,
        "full_bytes": len(full.content),
        "full_ms": full_seconds * 1000,
        "first_bytes": pct([float(b) for b in stats.first_bytes], 50),
        "inc_bytes": pct([float(b) for b in stats.incremental_bytes], 50),
        "inc_points": pct([float(p) for p in stats.incremental_points], 50),
        "empty_share": (sum(1 for p in stats.incremental_points if p == 0)
                        / max(1, len(stats.incremental_points))),
        "cores": cores,
        "total_iterations": total["total"] if total else 0,
        "write_p99_ms": pct(writer.write_seconds, 99) * 1000,
        "write_max_ms": max(writer.write_seconds, default=float("nan")) * 1000,
        "writes": len(writer.write_seconds),
        "wall": wall,
        "paced_rps": len(paced.latencies) / plan.poll_seconds,
        "paced_p50": pct(paced.latencies, 50) * 1000,
        "paced_p99": pct(paced.latencies, 99) * 1000,
        "paced_bytes": pct([float(b) for b in paced.incremental_bytes], 50),
        "paced_points": pct([float(p) for p in paced.incremental_points], 50),
        "paced_errors": paced.errors,
    }


# --------------------------------------------------------------------------- 5. recovery

# Long enough (minutes) that it is still running when the measurement ends; cancelled then.
RECOVERY_SPEC = {"dataset": "digits", "hidden_sizes": [500, 500], "batch_size": 20,
                 "epochs": 1000}
RECOVERY_TARGET = 10.0  # seconds from the kill to progress moving again
RECOVERY_TIMEOUT = 60.0
# What the new worker logs about the killed one's job: the recovery working, not trouble.
EXPECTED_LOG_LINES = ("its worker is gone; re-queueing it",)


def wait_progressing(cluster: Cluster, job_id: str, seconds: float) -> dict[str, Any]:
    """Poll until the job is running and its progress.iteration has grown for `seconds`."""
    deadline = time.monotonic() + QUEUED_TIMEOUT + seconds
    first: tuple[float, int] | None = None
    while True:
        job = cluster.job(job_id)
        if job["status"] in TERMINAL:
            raise RuntimeError(f"recovery job {job_id} ended {job['status']}: {job['error']}")
        iteration = job["progress"]["iteration"]
        if job["status"] == "running" and iteration > 0:
            if first is None:
                first = (time.monotonic(), iteration)
            elif iteration > first[1] and time.monotonic() - first[0] >= seconds:
                return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"recovery job {job_id} not progressing: {job}")
        time.sleep(0.05)


def recover_once(cluster: Cluster, rng: np.random.Generator) -> dict[str, Any]:
    """SIGKILL the whole worker (main process and pool) while its job runs, start a new
    worker at once, and time (from the kill) the job's return to making progress."""
    if cluster.worker is None or cluster.concurrency != 1:
        cluster.start_worker(1)
    job_id = cluster.submit(RECOVERY_SPEC)["id"]
    wait_progressing(cluster, job_id, 1.0)
    time.sleep(float(rng.uniform(0.0, 1.0)))  # any phase of the 1 s heartbeat
    killed = time.monotonic()
    cluster.kill_worker()
    time.sleep(0.05)  # a write the pool child had sent lands before we read
    frozen = cluster.job(job_id)
    attempts, iteration = frozen["attempts"], frozen["progress"]["iteration"]
    worker = cluster.start_worker(1, wait=False)
    registry = WorkerRegistry(cluster.job_store().client, cluster.prefix)
    marks: dict[str, float] = {}
    moving_at: int | None = None
    resumed_from: int | None = None
    deadline = killed + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        now = time.monotonic() - killed
        if "online" not in marks and cluster.worker_online(registry):
            marks["online"] = now
        job = cluster.job(job_id)
        if job["status"] in TERMINAL:
            raise RuntimeError(f"recovery job {job_id} ended {job['status']}: {job['error']}")
        if job["status"] == "queued":
            marks.setdefault("requeued", now)
        if job["attempts"] > attempts and job["status"] == "running":
            marks.setdefault("restarted", now)
            current = job["progress"]["iteration"]
            if moving_at is None and current != iteration:
                marks["moving"], moving_at = now, current
                resumed_from = current
            elif moving_at is not None and current > moving_at:
                marks["confirmed"] = now  # it goes on growing: it really moves
                break
        if worker.exited():
            raise RuntimeError(f"the new worker exited; see {worker.log}")
        time.sleep(0.02)
    cancel = cluster.client().post(f"/v1/jobs/{job_id}/cancel")
    if cancel.status_code == 202:
        with contextlib.suppress(RuntimeError):
            cluster.wait_terminal(job_id)
    if "confirmed" not in marks:
        raise RuntimeError(f"recovery: progress not moving {RECOVERY_TIMEOUT:g} s after the "
                           f"kill (marks {marks}); worker log {worker.log}")
    log(f"recovery: kill -> worker online {marks.get('online', float('nan')):.2f} s, "
        f"job re-queued {marks.get('requeued', float('nan')):.2f} s, new attempt running "
        f"{marks['restarted']:.2f} s, progress moving {marks['moving']:.2f} s "
        f"(iteration {iteration} at the kill, {resumed_from} after)")
    return {**marks, "frozen": iteration, "resumed": resumed_from}


def bench_recovery(cluster: Cluster, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    runs = [recover_once(cluster, rng) for _ in range(rounds)]

    def med(key: str) -> float:
        values = [run[key] for run in runs if key in run]
        return statistics.median(values) if values else float("nan")

    return {
        "runs": runs,
        "moving": med("moving"),
        "worst": max(run["moving"] for run in runs),
        "online": med("online"),
        "requeued": med("requeued"),
        "restarted": med("restarted"),
    }


# --------------------------------------------------------------------------- report


def scan_logs(paths: list[Path]) -> list[str]:
    """Lines of the children's logs that look like trouble."""
    found = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(expected in line for expected in EXPECTED_LOG_LINES):
                continue
            if any(word in line for word in ("ERROR", "Traceback", "CRITICAL", "WARNING")):
                found.append(f"{path.name}: {line[:200]}")
    return found


def verdict(
    ok: bool, others: float = 0.0, interval: tuple[float, float] | None = None,
    target: float = 0.0,
) -> str:
    """ok / MISSED; marked when the noise interval spans the target, or when other
    processes took CPU (>= 0.3 cores) meanwhile."""
    marks = []
    if interval is not None and interval[0] <= target <= interval[1]:
        marks.append("within noise")
    if others >= 0.3:
        marks.append(f"others {others:.1f} cores")
    return ("ok" if ok else "MISSED") + (f" ({', '.join(marks)})" if marks else "")


def interval(bounds: tuple[float, float] | None) -> str:
    return "n/a (under 5 rounds)" if bounds is None else f"{bounds[0]:.3f}-{bounds[1]:.3f}x"


def report(results: dict[str, Any], notes: list[str]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    o = results.get("overhead")
    busy1, busy3 = results.get("others1", 0.0), results.get("others3", 0.0)
    if o:
        rows += [
            ("1 direct train() (median)", f"{o['direct']:.3f} s", "", ""),
            ("1 in-process JobRunner, no Celery (median)", f"{o['runner']:.3f} s "
             f"({o['runner_ratio']:.3f}x, paired {o['paired_runner']:.3f}x)", "", ""),
            ("1 job started->finished (median)", f"{o['own']:.3f} s", "", ""),
            ("1 job submit->succeeded (median)", f"{o['wall']:.3f} s", "", ""),
            ("1 overhead, job run / direct", f"{o['own_ratio']:.3f}x "
             f"(paired {o['paired_own']:.3f}x)", "<= 1.03x",
             verdict(o["own_ratio"] <= 1.03, busy1, o["ci_own"], 1.03)),
            ("1   paired ratio, 90% bootstrap interval", interval(o["ci_own"]), "", ""),
            ("1 overhead, submit->succeeded / direct", f"{o['wall_ratio']:.3f}x "
             f"(paired {o['paired_wall']:.3f}x)", "<= 1.03x",
             verdict(o["wall_ratio"] <= 1.03, busy1, o["ci_wall"], 1.03)),
            ("1   paired ratio, 90% bootstrap interval", interval(o["ci_wall"]), "", ""),
        ]
    lat = results.get("latency")
    if lat:
        rows += [
            ("2 created->started (server), p50/p95", f"{lat['server'][0]:.1f} / "
             f"{lat['server'][1]:.1f} ms", "(report)", ""),
            ("2 submit->seen running (client), p50/p95", f"{lat['client'][0]:.1f} / "
             f"{lat['client'][1]:.1f} ms", "(report)", ""),
            ("2 POST /v1/jobs round trip, p50/p95", f"{lat['post'][0]:.1f} / "
             f"{lat['post'][1]:.1f} ms", "", ""),
        ]
    s = results.get("scaling")
    if s:
        rows += [
            ("3 service jobs/h, 1 vs 2 processes", f"{s['service'][0]:.0f} vs "
             f"{s['service'][1]:.0f}", "", ""),
            ("3 service scaling 2/1", f"{s['service_ratio']:.2f}x", ">= 1.8x",
             verdict(s["service_ratio"] >= 1.8, busy3)),
            ("3 raw CPU jobs/h, 1 vs 2 processes", f"{s['raw'][0]:.0f} vs {s['raw'][1]:.0f}",
             "", ""),
            ("3 raw CPU scaling 2/1 (control)", f"{s['raw_ratio']:.2f}x", "(hardware)", ""),
            ("3 service scaling / raw scaling", f"{s['service_ratio'] / s['raw_ratio']:.2f}",
             "", ""),
        ]
    p = results.get("polling")
    if p:
        rows += [
            ("4 curve polls/s, 100 back-to-back pollers", f"{p['rps']:.0f}", "(report)", ""),
            ("4   latency p50/p99", f"{p['p50']:.1f} / {p['p99']:.1f} ms", "(report)", ""),
            ("4 curve polls/s, 100 pollers at 1/s each", f"{p['paced_rps']:.0f}", "(report)", ""),
            ("4   latency p50/p99", f"{p['paced_p50']:.1f} / {p['paced_p99']:.1f} ms",
             "(report)", ""),
            ("4 body bytes: incremental poll (median)", f"{p['inc_bytes']:.0f} B "
             f"({p['inc_points']:.0f} points)", "", ""),
            ("4 body bytes: paced incremental poll (median)", f"{p['paced_bytes']:.0f} B "
             f"({p['paced_points']:.0f} points)", "", ""),
            ("4 body bytes: first poll (1000 points)", f"{p['first_bytes']:.0f} B", "", ""),
            ("4 body bytes: full poll (100,000 points)", f"{p['full_bytes']:,} B "
             f"({p['full_ms']:.0f} ms)", "", ""),
        ]
    rec = results.get("recovery")
    if rec:
        rows += [
            ("5 SIGKILL whole worker -> progress moving, median",
             f"{rec['moving']:.2f} s (worst {rec['worst']:.2f} s of {len(rec['runs'])})",
             "< 10 s", verdict(rec["worst"] < RECOVERY_TARGET, results.get("others5", 0.0))),
            ("5   kill -> new worker online / job re-queued",
             f"{rec['online']:.2f} / {rec['requeued']:.2f} s", "", ""),
            ("5   kill -> new attempt running", f"{rec['restarted']:.2f} s", "", ""),
        ]
    width = max(len(row[0]) for row in rows) if rows else 10
    value_width = max(len(row[1]) for row in rows) if rows else 10
    print()
    print("=" * (width + value_width + 24))
    print(f"{'measure':<{width}}  {'value':<{value_width}}  {'target':<10}  verdict")
    print("-" * (width + value_width + 24))
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {target:<10}  {ok}")
    print("=" * (width + value_width + 24))
    for note in notes:
        print(f"- {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    args = parser.parse_args()
    plan = QUICK if args.quick else NORMAL
    # Ctrl-C even when started from a shell that ignored SIGINT (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)

    if dataset_info("fashion-mnist").available:
        dataset, overhead_epochs, scaling_epochs = (
            "fashion-mnist", plan.overhead_epochs, plan.scaling_epochs)
    else:  # digits is ~40x smaller: more epochs for a job of similar length
        dataset, overhead_epochs, scaling_epochs = (
            "digits", 120 * plan.overhead_epochs, 120 * plan.scaling_epochs)
    notes = [
        f"mode {'quick' if args.quick else 'normal'}; {os.cpu_count()} CPUs; "
        "OPENBLAS_NUM_THREADS=1 in every process",
        f"jobs: {dataset} {784 if dataset == 'fashion-mnist' else 64}-"
        f"{'-'.join(map(str, HIDDEN))}-10 sigmoid, batch 100, "
        f"{overhead_epochs} epochs (overhead), {scaling_epochs} epochs (scaling); "
        "latency jobs: spiral 2-16-3, 20 epochs",
        "API: uvicorn, 1 process, default (access) logging to a file; workers: prefork, "
        "--without-mingle --without-gossip; service times are ms-precision server stamps",
    ]
    results: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="descent-bench-"))
    cluster = Cluster(workdir)
    status = 0
    load: list[str] = []
    try:
        busy = wait_for_quiet(plan.quiet_wait)
        if busy:
            log(f"machine still busy, measuring anyway: {busy}")
            notes.append(f"MACHINE BUSY at the start: {busy}")
        log(f"starting redis, API (logs in {workdir})")
        cluster.start()
        cluster.start_worker(1)

        def phase(label: str, run: Callable[[], Any]) -> Any:
            meter = CpuMeter()
            value = run()
            load.append(f"{label}: {meter.summary()}")
            results[f"others{label}"] = meter.measure()["others"]
            return value

        log(f"1. service overhead: {plan.overhead_rounds} interleaved rounds")
        results["overhead"] = phase(
            "1", lambda: bench_overhead(cluster, dataset, plan, overhead_epochs))
        log(f"2. submit-to-running latency: {plan.latency_jobs} jobs, one at a time")
        results["latency"] = phase("2", lambda: bench_latency(cluster, plan.latency_jobs))
        log(f"3. scaling: {plan.scaling_jobs} jobs per batch, order {plan.scaling_order}")
        results["scaling"] = phase(
            "3", lambda: bench_scaling(cluster, dataset, plan, scaling_epochs))
        log(f"4. curve polling: {plan.pollers} pollers, {plan.poll_seconds:g} s back to back, "
            f"then {plan.poll_seconds:g} s at 1 poll/s each")
        results["polling"] = p = phase("4", lambda: bench_polling(cluster, plan))
        log(f"polling: {p['requests']} back-to-back requests, {p['errors']} errors; "
            f"paced: {p['paced_errors']} errors")
        cores = ", ".join(f"{name} {value:.2f}" for name, value in p["cores"].items())
        notes.append(f"polling (uvicorn 1 process): CPU cores busy during the back-to-back "
                     f"window: {cores}; "
                     f"{p['empty_share']:.0%} of incremental polls had no new points; "
                     f"curve grew to {p['total_iterations']:,} iterations; writer "
                     f"{p['writes']} appends, p99 {p['write_p99_ms']:.1f} ms, "
                     f"max {p['write_max_ms']:.1f} ms")
        log(f"5. recovery: {plan.recovery_rounds} round(s) of SIGKILL to a whole worker "
            "mid-job, then a new worker")
        results["recovery"] = rec = phase(
            "5", lambda: bench_recovery(cluster, plan.recovery_rounds))
        fields = Settings.model_fields
        notes.append(
            f"recovery: default lease {fields['lease_seconds'].default:g} s, heartbeat "
            f"{fields['heartbeat_seconds'].default:g} s, reaper interval "
            f"{fields['reaper_interval_seconds'].default:g} s; worker concurrency 1, killed with "
            "SIGKILL to its process group at a random phase of the heartbeat, the new one "
            "started at once; 'moving' is the first GET /v1/jobs/{id} (polled every 20 ms) "
            "of the new attempt whose progress.iteration differs from the killed one's, and "
            "it grew again after; job: digits 64-500-500-10, batch 20; per round (s): "
            + "; ".join(f"{run['moving']:.2f} (iteration {run['frozen']} -> {run['resumed']})"
                        for run in rec["runs"]))
        o = results["overhead"]
        spread = ", ".join(f"{name} {lo:.3f}-{hi:.3f} s"
                           for name, (lo, hi) in o["spread"].items())
        notes.append(f"overhead: created->started median {o['queued'] * 1000:.0f} ms; "
                     f"min-max: {spread}; the client sleeps 0.8x the fastest direct run, "
                     "then polls GET /v1/jobs/{id} every 20 ms")
        s = results["scaling"]
        notes.append(f"scaling: median service job {s['job_seconds']:.2f} s; jobs/h is "
                     "n / (last finished_at - first created_at); raw: n / wall of the "
                     "plain processes (dataset preloaded in both)")
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({str(exc) or 'SIGINT'}): stopping everything", flush=True)
        status = 130
    except Exception as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", flush=True)
        status = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # cleanup is bounded: let it finish
        cluster.stop()
        if load:
            notes.append("machine load per phase (cores): " + "; ".join(load))
        trouble = scan_logs(cluster.logs)
        if trouble:
            notes.append(f"{len(trouble)} warning/error line(s) in the children's logs:")
            notes.extend(f"  {line}" for line in trouble[:15])
        report(results, notes)
        log(f"done; logs kept in {workdir}" if trouble or status else "done")
        if not trouble and not status:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
