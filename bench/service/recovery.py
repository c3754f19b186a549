"""5. Recovery: SIGKILL a whole worker (main process and pool) while its job runs, start a
new worker at once, and time from the kill until the job makes progress again (its
progress.iteration moves in a new attempt). Default lease, heartbeat and reaper interval.
Target: < 10 s."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.settings import Settings
from bench.service.harness import QUEUED_TIMEOUT, TERMINAL, Plan, Row, Stack
from bench.service.log import log
from bench.service.stats import median, parse_time, verdict

# Minutes long, so that it still runs when the measurement ends (it is cancelled then);
# its epochs take well under the 0.25 s progress flush, so progress moves every flush.
SPEC = {"dataset": "digits", "hidden_sizes": [500, 500], "batch_size": 20, "epochs": 1000}
TARGET = 10.0  # seconds from the kill to progress moving again
TIMEOUT = 60.0
POLL = 0.02
# What the new worker logs about the killed one's job: the recovery working, not trouble.
EXPECTED_LOG_LINES = ("its worker is gone; re-queue",)


def wait_progressing(stack: Stack, job_id: str, seconds: float) -> dict[str, Any]:
    """Poll until the job is running and its progress.iteration has grown for `seconds`."""
    deadline = time.monotonic() + QUEUED_TIMEOUT + seconds
    first: tuple[float, int] | None = None
    while True:
        job = stack.job(job_id)
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


def recover_once(stack: Stack, rng: np.random.Generator) -> dict[str, Any]:
    """One kill and recovery: seconds from the kill to each step, and the iterations."""
    if stack.worker is None or stack.concurrency != 1:
        stack.start_worker(1)
    job_id = stack.submit(SPEC)["id"]
    try:
        wait_progressing(stack, job_id, 1.0)
        time.sleep(float(rng.uniform(0.0, 1.0)))  # any phase of the 1 s heartbeat
        killed = time.monotonic()
        stack.kill_worker()
        time.sleep(0.05)  # a write the pool child had sent lands before we read
        frozen = stack.job(job_id)
        attempts, iteration = frozen["attempts"], frozen["progress"]["iteration"]
        worker = stack.start_worker(1, wait=False)
        marks = follow(stack, job_id, killed, attempts, iteration)
    finally:
        try:
            stack.cancel(job_id)
        except RuntimeError as exc:  # the next round's job would queue behind it
            log(f"recovery: cancelling {job_id}: {exc}")
    if "confirmed" not in marks:
        raise RuntimeError(f"recovery: progress not moving {TIMEOUT:g} s after the kill "
                           f"(marks {marks}); worker log {worker.log}")
    log(f"recovery: kill -> worker online {marks.get('online', float('nan')):.2f} s, "
        f"job re-queued {marks.get('requeued', float('nan')):.2f} s, new attempt running "
        f"{marks['restarted']:.2f} s, progress moving {marks['moving']:.2f} s "
        f"(iteration {iteration} at the kill, {marks['resumed']:.0f} after)")
    return {**marks, "frozen": iteration}


def queued_at(stack: Stack, job_id: str) -> float | None:
    """When (unix time) the job last entered the queue: the store's stamp of the step that
    sent its message (not part of the public job)."""
    stamp = stack.store.client.hget(stack.store.keys.job(job_id).job, "queued_at")
    return parse_time(stamp.decode()) if stamp else None


def follow(
    stack: Stack, job_id: str, killed: float, attempts: int, iteration: int
) -> dict[str, float]:
    """Poll the job and the new worker from the kill on: when (s after `killed`) the
    worker came online, the job was seen queued again, a new attempt running, its
    progress moving (progress.iteration no longer the killed attempt's) and moving on.

    The reaper re-queues the job and sends its message in one step, and the idle new
    worker takes it within milliseconds: a poll may never see it queued. Then its
    re-queueing is the store's stamp of that step."""
    registry = stack.registry()
    marks: dict[str, float] = {}
    killed_wall = time.time() - (time.monotonic() - killed)  # for the store's stamps
    while time.monotonic() < killed + TIMEOUT:
        now = time.monotonic() - killed
        if "online" not in marks and stack.worker_online(registry):
            marks["online"] = now
        job = stack.job(job_id)
        if job["status"] in TERMINAL:
            raise RuntimeError(f"recovery job {job_id} ended {job['status']}: {job['error']}")
        if job["status"] == "queued":
            marks.setdefault("requeued", now)
        if job["attempts"] > attempts and job["status"] == "running":
            marks.setdefault("restarted", now)
            stamp = queued_at(stack, job_id) if "requeued" not in marks else None
            if stamp is not None and stamp > killed_wall:
                marks["requeued"] = stamp - killed_wall
            current = job["progress"]["iteration"]
            if "moving" not in marks and current != iteration:
                marks["moving"], marks["resumed"] = now, current
            elif "moving" in marks and current > marks["resumed"]:
                marks["confirmed"] = now  # it goes on growing: it really moves
                return marks
        if stack.worker is not None and not stack.worker.running():
            raise RuntimeError(f"the new worker exited; see {stack.worker.log}")
        time.sleep(POLL)
    return marks


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    log(f"5. recovery: {plan.recovery_rounds} round(s) of SIGKILL to a whole worker "
        "mid-job, then a new worker")
    rng = np.random.default_rng(5)
    runs = [recover_once(stack, rng) for _ in range(plan.recovery_rounds)]

    def med(key: str) -> float:
        return median([run[key] for run in runs if key in run])

    return {
        "runs": runs,
        "moving": med("moving"),
        "worst": max(run["moving"] for run in runs),
        "online": med("online"),
        "requeued": med("requeued"),
        "restarted": med("restarted"),
    }


def rows(rec: dict[str, Any], others: float) -> list[Row]:
    return [
        ("5 SIGKILL whole worker -> progress moving, median",
         f"{rec['moving']:.2f} s (worst {rec['worst']:.2f} s of {len(rec['runs'])})",
         "< 10 s", verdict(rec["worst"] < TARGET, others)),
        ("5   kill -> new worker online / job re-queued",
         f"{rec['online']:.2f} / {rec['requeued']:.2f} s", "", ""),
        ("5   kill -> new attempt running", f"{rec['restarted']:.2f} s", "", ""),
    ]


def notes(rec: dict[str, Any]) -> list[str]:
    fields = Settings.model_fields
    return [
        f"recovery: default lease {fields['lease_seconds'].default:g} s, heartbeat "
        f"{fields['heartbeat_seconds'].default:g} s, reaper interval "
        f"{fields['reaper_interval_seconds'].default:g} s; worker concurrency 1, killed with "
        "SIGKILL to its process group at a random phase of the heartbeat, the new one "
        "started at once; 'moving' is the first GET /v1/jobs/{id} (polled every 20 ms) "
        "of the new attempt whose progress.iteration differs from the killed one's, and "
        "it grew again after; job: digits 64-500-500-10, batch 20; per round (s): "
        + "; ".join(f"{run['moving']:.2f} (iteration {run['frozen']} -> {run['resumed']:.0f})"
                    for run in rec["runs"])
    ]
