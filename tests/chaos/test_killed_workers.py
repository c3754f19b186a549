"""Pool processes and whole workers SIGKILLed mid-job: every job resumes from its last epoch
checkpoint and ends with exactly the result of a run that was never interrupted, bit for bit.

Real processes only: a redis-server, Celery workers started by scripts.stack, the API. Which
pool process runs which job is asked of the worker itself (Celery's `inspect active`, whose
answer names each task's `worker_pid`), so every kill hits a process that is training.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery

from app.store.leases import LeaseHolder
from app.store.queue import make_celery
from scripts.stack import RedisServer, stack_env, start_worker
from tests.e2e.conftest import FAST, Service, running_service, wait_for
from trainer import Checkpoint

MAX_ATTEMPTS = 3
# A checkpoint at every epoch's end, so that a resumed attempt starts from the last one.
SETTINGS = {"DESCENT_CHECKPOINT_SECONDS": "0", "DESCENT_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
# 64-128-128-10 on the 8x8 digits, batch 8: 162 iterations an epoch, 6,480 iterations in
# 40 epochs (about 3 s with two jobs on two cores): long enough to be killed mid-run a few
# times, short enough for four of them (twice) in well under a minute.
DIGITS = {"dataset": "digits", "hidden_sizes": [128, 128], "activation": "relu",
          "learning_rate": 0.01, "batch_size": 8, "epochs": 40}
# Momentum too, so that the optimiser's state has to come back from the checkpoint.
SPECS = [
    {**DIGITS, "seed": 11},
    {**DIGITS, "seed": 12, "momentum": 0.9},
    {**DIGITS, "seed": 13, "learning_rate": 0.02},
    {**DIGITS, "seed": 14, "momentum": 0.5, "activation": "sigmoid", "learning_rate": 0.1},
]
KILLS = 3
RANDOM_SEED = 20240817


def active_jobs(celery: Celery, service: Service) -> dict[str, list[int]]:
    """job id -> the pids of the worker's pool processes that hold its message right now
    (two when a redelivered message waits out the lease of the process that runs it)."""
    node = service.worker.node
    replies = celery.control.inspect(destination=[node], timeout=2.0, limit=1).active() or {}
    running: dict[str, list[int]] = {}
    for task in replies.get(node, []):
        running.setdefault(task["args"][0], []).append(int(task["worker_pid"]))
    return running


def checkpoint_epoch(service: Service, job_id: str) -> int | None:
    """The epoch of the job's stored checkpoint (what a new attempt resumes from)."""
    holder = LeaseHolder(service.store.client, prefix=service.settings.key_prefix)
    blob = holder.load_checkpoint(job_id)
    return Checkpoint.from_bytes(blob).epoch if blob else None


def wait_done(service: Service, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait for all of `job_ids` to end within one deadline; return their final records."""
    deadline = time.monotonic() + timeout
    return [
        service.wait_status(job_id, ("succeeded", "failed", "cancelled"),
                            timeout=max(1.0, deadline - time.monotonic()))
        for job_id in job_ids
    ]


def outcome(service: Service, job: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on interruptions: the whole curve, epoch rows and metrics."""
    curve = service.full_curve(job["id"])
    response = service.client.get(f"/v1/jobs/{job['id']}/metrics")
    assert response.status_code == 200, response.text
    metrics = response.json()
    metrics.pop("duration_seconds", None)  # wall time, the one thing allowed to differ
    return {"loss": curve["loss"], "iterations": curve["iterations"],
            "epochs": curve["epochs"], "metrics": metrics}


def assert_whole_curve(service: Service, job: dict[str, Any], spec: dict[str, Any]) -> None:
    """Iterations 1..N, each once, N the job's planned iterations; one row per epoch."""
    curve = service.full_curve(job["id"])
    total = job["progress"]["iterations"]
    assert curve["total"] == total, (job["id"], curve["total"], total)
    assert curve["iterations"] == list(range(1, total + 1)), f"job {job['id']}: gaps or repeats"
    assert len(curve["loss"]) == total
    assert [row["epoch"] for row in curve["epochs"]] == list(range(1, spec["epochs"] + 1))


def assert_same_as_uninterrupted(
    service: Service, jobs: list[dict[str, Any]], specs: list[dict[str, Any]]
) -> None:
    """Run `specs` again on the same service, uninterrupted, and compare bit for bit (JSON
    floats round-trip exactly, so equal lists mean equal float32/float64 values)."""
    clean_ids = [service.submit(**spec)["id"] for spec in specs]
    clean_jobs = wait_done(service, clean_ids, timeout=120)
    for job, clean, spec in zip(jobs, clean_jobs, specs, strict=True):
        assert clean["status"] == "succeeded" and clean["attempts"] == 1, clean
        interrupted, reference = outcome(service, job), outcome(service, clean)
        for part in ("iterations", "loss", "epochs", "metrics"):
            assert interrupted[part] == reference[part], (
                f"job {job['id']} (spec {spec}, {job['attempts']} attempts): {part!r} "
                "differs from an uninterrupted run of the same spec and seed"
            )


def training_jobs(celery: Celery, service: Service, job_ids: list[str],
                  kills: Counter[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The jobs training right now that may be killed once more: running in a pool process
    in an attempt begun after their last kill (a killed job's message may already wait, in
    another process, for the dead attempt's lease to lapse: that process is not busy),
    killed at most MAX_ATTEMPTS - 2 times so far (one attempt more would fail the job), and
    far enough from their end."""
    found = []
    for job_id in sorted(active_jobs(celery, service)):
        job = service.job(job_id)
        progress = job["progress"]
        if (job["status"] == "running" and job["attempts"] == 1 + kills[job_id]
                and kills[job_id] < MAX_ATTEMPTS - 1
                and progress["iteration"] < 0.6 * progress["iterations"]):
            found.append((job_id, job))
    if not found:
        ended = [service.job(job_id)["status"] for job_id in job_ids]
        assert any(status in ("queued", "running") for status in ended), (
            f"every job ended after {sum(kills.values())} kills: the jobs are too short")
    return found or None


def kill_busy_pool_processes(service: Service, job_ids: list[str], count: int,
                             rng: random.Random) -> tuple[Counter[str], list[str]]:
    """SIGKILL `count` times the pool process training a random job, after a random amount
    of that job's progress; return the kills per job and what happened."""
    kills: Counter[str] = Counter()
    killed_pids: set[int] = set()
    log: list[str] = []
    celery = make_celery(service.settings)
    try:
        deadline = time.monotonic() + 60
        while len(log) < count:
            assert time.monotonic() < deadline, f"only {len(log)} kills in 60 s: {log}"
            choices = wait_for(lambda: training_jobs(celery, service, job_ids, kills), 30,
                               f"a job to kill, after {log}")
            job_id, job = rng.choice(choices)
            progress = job["progress"]
            per_epoch = progress["iterations"] // progress["epochs"]
            # Past the first epoch's checkpoint, then anywhere within the next four epochs.
            target = max(progress["iteration"], per_epoch) + rng.randint(20, 4 * per_epoch)
            target = min(target, int(0.8 * progress["iterations"]))

            def reached(job_id: str = job_id, target: int = target) -> bool:
                job = service.job(job_id)
                return job["status"] != "running" or job["progress"]["iteration"] >= target

            wait_for(reached, 60, f"job {job_id} to reach iteration {target}")
            pids = active_jobs(celery, service).get(job_id, [])
            job = service.job(job_id)  # just before the kill: still running, not ending
            if (job["status"] != "running" or job["attempts"] != 1 + kills[job_id]
                    or len(pids) != 1 or pids[0] in killed_pids
                    or pids[0] not in service.pool_pids()
                    or job["progress"]["iteration"] >= 0.85 * job["progress"]["iterations"]):
                continue  # ended, in no (or two) live processes, or too close to its end
            (pid,) = pids
            os.kill(pid, signal.SIGKILL)
            killed_pids.add(pid)
            kills[job_id] += 1
            saved = checkpoint_epoch(service, job_id)
            log.append(f"pid {pid} killed in job {job_id}'s attempt {job['attempts']} at "
                       f"iteration {job['progress']['iteration']}, checkpoint of epoch {saved}")
            assert saved is not None and saved >= 1, f"no checkpoint to resume from: {log[-1]}"
    finally:
        celery.close()
    return kills, log


def test_three_pool_process_kills_among_four_jobs_change_no_result(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    rng = random.Random(RANDOM_SEED)
    # All four jobs sent to the workers at once (the default max_running_jobs, 2, would
    # keep two of them waiting, with no message, until one ends).
    with running_service(redis_server, tmp_path, quotas={"max_running_jobs": len(SPECS)},
                         DESCENT_WORKER_CONCURRENCY="2", **SETTINGS) as service:
        job_ids = [service.submit(**spec)["id"] for spec in SPECS]
        kills, log = kill_busy_pool_processes(service, job_ids, KILLS, rng)

        jobs = wait_done(service, job_ids, timeout=150)
        for job, spec in zip(jobs, SPECS, strict=True):
            assert job["status"] == "succeeded", (job, log)
            # Each kill of the process training a job costs that job one attempt.
            assert job["attempts"] == 1 + kills[job["id"]], (job, log)
            assert 1 <= job["attempts"] <= MAX_ATTEMPTS
            assert job["progress"]["iteration"] == job["progress"]["iterations"]
            assert_whole_curve(service, job, spec)
        assert sum(kills.values()) == KILLS, log

        assert_same_as_uninterrupted(service, jobs, SPECS)


def test_a_whole_worker_killed_mid_job_is_replaced_and_its_job_ends_as_if_never_killed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    rng = random.Random(RANDOM_SEED + 1)
    spec = {**DIGITS, "seed": 21, "momentum": 0.9}
    with running_service(redis_server, tmp_path, **SETTINGS) as service:
        job_id = service.submit(**spec)["id"]
        per_epoch = wait_for(lambda: service.job(job_id)["progress"]["iterations"], 30,
                             "the job's plan") // spec["epochs"]
        target = rng.randint(per_epoch + 20, 12 * per_epoch)
        wait_for(lambda: service.job(job_id)["progress"]["iteration"] >= target, 60,
                 f"iteration {target}")
        victims = [service.worker.pid, *service.pool_pids()]
        for pid in victims:  # main process first: no new pool process is forked after this
            os.kill(pid, signal.SIGKILL)
        killed_at = service.job(job_id)
        assert killed_at["status"] == "running", killed_at
        assert (checkpoint_epoch(service, job_id) or 0) >= 1, "no checkpoint to resume from"

        env = stack_env(service.settings.redis_url, **FAST,
                        DESCENT_KEY_PREFIX=service.settings.key_prefix, **SETTINGS)
        replacement = start_worker(env, name="replacement", log=tmp_path / "replacement.log",
                                   args=["--without-mingle", "--without-gossip"])
        try:
            replacement.wait_online(60)
            (done,) = wait_done(service, [job_id], timeout=120)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2, done
            assert_whole_curve(service, done, spec)
            # The replacement also runs the uninterrupted reference.
            assert_same_as_uninterrupted(service, [done], [spec])
        finally:
            replacement.stop(timeout=20)
