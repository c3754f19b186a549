"""Another host: two workers on two machines of their own (network namespaces, each wired to
the Redis host by a veth pair); the link of the one that runs a job goes down mid-job.

The job finishes on the other machine with exactly the result of an uninterrupted run, and
when the link comes back the partitioned worker, which kept running all along with its job's
state in memory, writes nothing over it (its writes are fenced by the lease it lost) and
takes new work again.

    namespace "redis": redis-server on 127.0.0.1, 10.77.1.1 and 10.77.2.1, and on a unix
        socket for the test's own client; the API (uvicorn) on a unix socket for the test
    namespace "a": a worker, REDIS_URL=redis://10.77.1.1:6379/0   (veth "ra" <-> "eth0")
    namespace "b": a worker, REDIS_URL=redis://10.77.2.1:6379/0   (veth "rb" <-> "eth0")

Nothing is added to the network of the machine that runs the test: unix sockets cross
network namespaces, and the namespaces (with their veths) are named after the run and
deleted at the end. The link goes down at the Redis host's end, like a cable pulled out of
the switch: the cut-off machine's interface loses its carrier and its packets vanish without
an error, so its worker's open connections hang rather than fail.

Needs root (`ip netns`); skipped, with the reason, where namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.store.keys import KeyLayout
from app.store.leases import LeaseHolder
from app.store.registry import WorkerRegistry
from scripts.stack import Child, StackError, make_tenant, redis_server_binary, stack_env
from scripts.stack.services import ASGI_APP, CELERY_APP, GRACEFUL_SECONDS
from tests.e2e.conftest import FAST, wait_for
from trainer import Checkpoint

REDIS_PORT = 6379  # every namespace has its own ports: nothing else is on this one
SETTINGS = {
    **FAST,  # lease 3 s, heartbeat 0.5 s, a reaper pass every second
    "DESCENT_CHECKPOINT_SECONDS": "0",  # a checkpoint at every epoch's end
    # A worker cut off from Redis gives its job up this long after its socket timeout.
    "DESCENT_REDIS_OUTAGE_SECONDS": "20",
}
# 9,000 iterations of a 64-256-256-10 net (200 an epoch), a few seconds of training: the link
# goes down after two epochs' checkpoints, so most of the job is left to the other host.
SPEC: dict[str, Any] = {
    "dataset": "digits", "hidden_sizes": [256, 256], "activation": "relu",
    "learning_rate": 0.005, "momentum": 0.9, "batch_size": 8, "epochs": 45, "seed": 21,
}
# How the partitioned worker's attempt may end (worker.runner, worker.tasks): a fenced write
# or its heartbeat finds that the lease is gone, or it gives the job up to the reaper.
FENCED_OFF = ("lease lost to another worker", "ended elsewhere", "leaving it to the reaper")


class NetworkError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """A worker's machine: a namespace with one veth to the Redis host's namespace."""

    name: str
    netns: str
    switch_port: str  # the veth's end in the Redis host's namespace
    redis_address: str  # Redis as this machine sees it, across its veth
    address: str

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_address}:{REDIS_PORT}/0"


class Network:
    """The Redis host and the worker machines "a" and "b", all named after this run."""

    def __init__(self, run_id: str) -> None:
        self.redis_netns = f"descent-{run_id}-redis"
        self.hosts = {
            name: Host(name, f"descent-{run_id}-{name}", f"r{name}", f"10.77.{i}.1",
                       f"10.77.{i}.2")
            for i, name in enumerate("ab", start=1)
        }
        self.made: list[str] = []

    def make(self) -> None:
        for netns in [self.redis_netns, *(host.netns for host in self.hosts.values())]:
            ip("netns", "add", netns)
            self.made.append(netns)
            ip("-n", netns, "link", "set", "lo", "up")
        for host in self.hosts.values():
            # Both ends are made inside namespaces: nothing appears on the test's machine.
            ip("-n", self.redis_netns, "link", "add", host.switch_port, "type", "veth",
               "peer", "name", "eth0", "netns", host.netns)
            ip("-n", self.redis_netns, "addr", "add", f"{host.redis_address}/30",
               "dev", host.switch_port)
            ip("-n", host.netns, "addr", "add", f"{host.address}/30", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            self.plug(host, connected=True)

    def plug(self, host: Host, *, connected: bool) -> None:
        """Plug `host`'s cable into the Redis host's switch port, or pull it out."""
        ip("-n", self.redis_netns, "link", "set", host.switch_port,
           "up" if connected else "down")

    def remove(self) -> None:
        """Delete the namespaces, and with them their veths (stop what runs inside first)."""
        for netns in reversed(self.made):
            with contextlib.suppress(NetworkError, subprocess.TimeoutExpired):
                ip("netns", "delete", netns)
        self.made.clear()


def in_netns(netns: str, command: Sequence[str]) -> list[str]:
    """`command` run inside `netns` (ip execs it there: the child is the command itself)."""
    return ["ip", "netns", "exec", netns, *command]


@pytest.fixture
def network() -> Iterator[Network]:
    """The three machines' namespaces; skips where this machine cannot make namespaces."""
    if os.geteuid() != 0:
        pytest.skip(f"network namespaces need root (`ip netns add`); running as uid "
                    f"{os.geteuid()}")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make network namespaces with")
    net = Network(uuid.uuid4().hex[:8])
    try:
        try:
            net.make()
        except NetworkError as exc:
            if not net.made:  # the very first `ip netns add`
                pytest.skip(f"this machine cannot make network namespaces: {exc}")
            raise
        yield net
    finally:
        net.remove()


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short directory for the unix sockets (their paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="descent-host-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Cluster:
    """What the test sees of the machines: Redis and the API through their unix sockets."""

    def __init__(self, prefix: str, client: redis.Redis, api: httpx.Client) -> None:
        self.prefix = prefix
        self.redis = client
        self.api = api
        self.holder = LeaseHolder(client, prefix=prefix)
        self.registry = WorkerRegistry(client, prefix)

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.api.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_ended(self, job_id: str, timeout: float) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job: dict[str, Any] = wait_for(ended, timeout, f"job {job_id} to end")
        return job

    def outcome(self, job_id: str) -> dict[str, Any]:
        """What must not depend on the partition: the whole curve, epoch rows and metrics."""
        curve = self.api.get(f"/v1/jobs/{job_id}/curve", params={"max_points": 100_000})
        assert curve.status_code == 200, curve.text
        metrics = self.api.get(f"/v1/jobs/{job_id}/metrics")
        assert metrics.status_code == 200, metrics.text
        test_metrics = metrics.json()
        test_metrics.pop("duration_seconds", None)  # wall time: the one thing that may differ
        points = curve.json()
        return {"total": points["total"], "iterations": points["iterations"],
                "loss": points["loss"], "epochs": points["epochs"], "metrics": test_metrics}

    def stored(self, job_id: str) -> dict[str, bytes | None]:
        """Every key of the job as Redis holds it (DUMP), byte for byte."""
        keys = KeyLayout(self.prefix).job(job_id)
        names = [keys.job, keys.losses, keys.epochs, keys.metrics, keys.checkpoint,
                 keys.lease, keys.weights]
        return {name: self.redis.dump(name) for name in names}

    def checkpoint_epoch(self, job_id: str) -> int:
        blob = self.holder.load_checkpoint(job_id)
        return Checkpoint.from_bytes(blob).epoch if blob else 0

    def online(self, node: str, within: float = 600.0) -> bool:
        try:
            return node in self.registry.alive(within)
        except redis.RedisError:
            return False


def start_redis_host(network: Network, sockets: Path, logs: Path) -> Child:
    """redis-server in the Redis host's namespace, on its veths' addresses, its loopback
    (the API) and a unix socket (the test), keeping nothing on disk."""
    scratch = sockets / "redis"
    scratch.mkdir()
    addresses = ["127.0.0.1", *(host.redis_address for host in network.hosts.values())]
    command = [
        redis_server_binary(), "--bind", *addresses, "--port", str(REDIS_PORT),
        "--protected-mode", "no",  # other machines connect, as in any deployment
        "--unixsocket", str(sockets / "redis.sock"), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(scratch),
        "--maxmemory-policy", "noeviction",
    ]
    return Child("redis-server", in_netns(network.redis_netns, command), log=logs / "redis.log")


def start_api_host(network: Network, env: dict[str, str], sockets: Path, logs: Path) -> Child:
    """The API in the Redis host's namespace (Redis on its loopback), on a unix socket."""
    command = [
        sys.executable, "-m", "uvicorn", ASGI_APP, "--uds", str(sockets / "api.sock"),
        "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS), "--no-access-log",
    ]
    return Child("api", in_netns(network.redis_netns, command), env=env, log=logs / "api.log")


def start_worker_host(host: Host, env: dict[str, str], logs: Path) -> tuple[Child, str]:
    """A Celery worker on `host`, as the README's "More workers, more machines" starts one
    (scripts.stack's command line), inside the host's namespace; and its node name. SIGKILLed
    by the kernel if the test dies, as scripts.stack.Worker is."""
    name = f"host-{host.name}"
    command = [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", "--pool=prefork",
        "--loglevel=INFO", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
    ]
    worker = Child(f"worker on host {host.name}", in_netns(host.netns, command), env=env,
                   log=logs / f"worker-{host.name}.log", death_signal=signal.SIGKILL)
    return worker, f"{name}@{socket.gethostname()}"


def log_text(child: Child) -> str:
    return child.log.read_text(errors="replace") if child.log and child.log.exists() else ""


def logged(child: Child, line: str) -> bool:
    return line in log_text(child)


@contextlib.contextmanager
def running(child: Child, timeout: float = 20) -> Iterator[Child]:
    """`child`, stopped on the way out (SIGTERM, then SIGKILL of what is left of its group)."""
    try:
        yield child
    finally:
        child.stop(timeout=timeout)


def watch(children: Sequence[Child], condition: Any, timeout: float, what: str) -> Any:
    """wait_for that fails at once, with the log's end, if one of `children` exits."""
    def checked() -> Any:
        for child in children:
            status = child.exit_status()
            if status is not None:
                raise StackError(f"{child.name} exited ({status}) while waiting for {what}"
                                 + child.log_tail())
        return condition()

    return wait_for(checked, timeout, what)


def _ping(client: redis.Redis, server: Child) -> bool:
    if not server.running():
        raise StackError(f"redis-server exited ({server.exit_status()}){server.log_tail()}")
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _taken_by(workers: dict[str, tuple[Child, str]], job_id: str) -> str | None:
    """The host whose worker started the job's first attempt (its log says so)."""
    for name, (worker, _) in workers.items():
        if f"job {job_id}: attempt 1 started" in log_text(worker):
            return name
    return None


def _attempt_end(worker: Child, job_id: str) -> str | None:
    """How the worker's attempt at `job_id` ended, from its log (worker.tasks's last word)."""
    outcomes = "|".join([*map(re.escape, FENCED_OFF), "succeeded", r"failed\b.*", "cancelled"])
    pattern = rf"job {job_id}: (?:.*; )?({outcomes})$"
    found = re.search(pattern, log_text(worker), re.MULTILINE)
    return found.group(1) if found else None


def test_a_worker_cut_off_mid_job_loses_it_to_another_host_and_cannot_touch_it_after(
    network: Network, sockets: Path, tmp_path: Path
) -> None:
    prefix = f"host-{uuid.uuid4().hex}"
    settings = {**SETTINGS, "DESCENT_KEY_PREFIX": prefix}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        redis_host = stack.enter_context(
            running(start_redis_host(network, sockets, tmp_path), timeout=10))
        client = redis.Redis(unix_socket_path=str(sockets / "redis.sock"),
                             socket_connect_timeout=2, socket_timeout=10)
        stack.callback(client.close)
        wait_for(lambda: _ping(client, redis_host), 20, "redis-server in its namespace")

        api_env = stack_env(f"redis://127.0.0.1:{REDIS_PORT}/0", **settings)
        api_process = stack.enter_context(
            running(start_api_host(network, api_env, sockets, tmp_path)))
        workers: dict[str, tuple[Child, str]] = {}
        for name, host in network.hosts.items():
            env = stack_env(host.redis_url, **settings)
            workers[name] = start_worker_host(host, env, tmp_path)
            stack.enter_context(running(workers[name][0], timeout=15))
        children = [redis_host, api_process, *(worker for worker, _ in workers.values())]
        # A tenant for the test's jobs, made through the test's own socket to Redis.
        api_key = make_tenant({"REDIS_URL": f"unix://{sockets / 'redis.sock'}",
                               "DESCENT_KEY_PREFIX": prefix}, "another-host")
        transport = httpx.HTTPTransport(uds=str(sockets / "api.sock"))
        api = stack.enter_context(httpx.Client(
            transport=transport, base_url="http://api", timeout=30, trust_env=False,
            headers={"Authorization": f"Bearer {api_key}"}))
        cluster = Cluster(prefix, client, api)
        for name, (_, node) in workers.items():
            watch(children, lambda node=node: cluster.online(node), 60,
                  f"the worker on host {name} to come online")
        watch(children, lambda: _ready(api), 60, "the API to be ready")

        # The job goes to one of the two idle workers: that one's link will be cut.
        job_id = cluster.submit(SPEC)
        cut = watch(children, lambda: _taken_by(workers, job_id), 30, "a worker to take the job")
        (other,) = set(workers) - {cut}
        cut_worker, cut_node = workers[cut]
        other_worker = workers[other][0]
        watch(children, lambda: cluster.checkpoint_epoch(job_id) >= 2, 60,
              f"host {cut} to checkpoint two epochs")
        before = cluster.job(job_id)
        assert before["status"] == "running" and before["attempts"] == 1, before
        resumes_from = cluster.checkpoint_epoch(job_id)
        up_at = time.monotonic()

        network.plug(network.hosts[cut], connected=False)  # its worker runs on, cut off
        cut_at = time.monotonic()

        # The lease lapses, the other host's reaper re-queues the job and its worker resumes
        # it from the checkpoint.
        done = cluster.wait_ended(job_id, 90)
        failed_over = time.monotonic()
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2, done  # the cut-off worker's attempt, then the other's
        assert f"job {job_id}: attempt 2 started" in log_text(other_worker)
        watch(children, lambda: logged(other_worker, f"job {job_id}: succeeded"), 10,
              f"host {other}'s worker to log the job's end")
        result = cluster.outcome(job_id)
        assert result["iterations"] == list(range(1, done["progress"]["iterations"] + 1))
        assert [row["epoch"] for row in result["epochs"]] == list(range(1, SPEC["epochs"] + 1))
        stored = cluster.stored(job_id)

        # The same spec and seed, never interrupted, on the other host (the cut-off worker
        # cannot reach the queue).
        clean_id = cluster.submit(SPEC)
        clean = cluster.wait_ended(clean_id, 90)
        assert clean["status"] == "succeeded" and clean["attempts"] == 1, clean
        watch(children, lambda: logged(other_worker, f"job {clean_id}: succeeded"), 10,
              f"host {other}'s worker to log the clean run's end")
        reference = cluster.outcome(clean_id)
        for part in ("total", "iterations", "loss", "epochs", "metrics"):
            assert result[part] == reference[part], (
                f"the job that lost its worker to a network partition differs in its {part} "
                "from an uninterrupted run of the same spec and seed")

        # The link comes back: the cut-off attempt finds that the lease is gone and ends
        # without a write, and its worker, which kept running throughout, is back.
        assert cut_worker.running(), f"the cut-off worker died{cut_worker.log_tail()}"
        network.plug(network.hosts[cut], connected=True)
        restored = time.monotonic()
        ended = watch(children, lambda: _attempt_end(cut_worker, job_id), 90,
                      f"host {cut}'s attempt at the job to end")
        assert ended in FENCED_OFF, f"host {cut}'s attempt ended: {ended}{cut_worker.log_tail()}"
        fenced = time.monotonic()
        assert cluster.stored(job_id) == stored, f"host {cut} wrote to the job after losing it"
        assert cluster.job(job_id) == done
        assert cluster.outcome(job_id) == result

        # ...and takes new work: the other host leaves, and a new job runs on this one.
        watch(children, lambda: cluster.online(cut_node, within=1.5), 60,
              f"the worker on host {cut} to say it is alive again")
        children.remove(other_worker)
        assert other_worker.stop(timeout=15), f"host {other}'s worker did not stop in time"
        after_id = cluster.submit({**SPEC, "epochs": 2, "seed": 22})
        after = cluster.wait_ended(after_id, 60)
        assert after["status"] == "succeeded", after
        watch(children, lambda: logged(cut_worker, f"job {after_id}: attempt 1 started"), 10,
              f"host {cut}'s worker to have run the new job")
        assert cluster.stored(job_id) == stored

    print(f"\nanother host: stack up and job checkpointed in {up_at - started:.1f} s; "
          f"host {cut} cut off at epoch {before['progress']['epoch']} (checkpoint "
          f"{resumes_from}); host {other} finished the job {failed_over - cut_at:.1f} s "
          f"later; clean run {restored - failed_over:.1f} s; host {cut} fenced off "
          f"({ended!r}) {fenced - restored:.1f} s after its link came back; total "
          f"{time.monotonic() - started:.1f} s")
