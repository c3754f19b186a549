"""6. Redis restarts: crash redis-server (SIGKILL) under a running job and a queue of
waiting ones and start it again at once; time from the crash until the running job's
progress moves again, and count the queued jobs that survive. Run with the append-only
file production uses (appendfsync everysec) and, as the negative control, without one."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.service.harness import TERMINAL, Plan, Row, bearer, make_bench_tenant
from bench.service.log import log
from bench.service.stats import median
from scripts.stack import RedisServer, stack_env, start_api, start_redis, start_worker

SPEC = {"dataset": "digits", "hidden_sizes": [500, 500], "batch_size": 20, "epochs": 1000}
QUEUED = 5  # jobs waiting behind the running one when Redis crashes
TIMEOUT = 60.0


def get(client: httpx.Client, path: str) -> httpx.Response | None:
    try:
        return client.get(path)
    except httpx.HTTPError:
        return None


def wait_running(client: httpx.Client, job_id: str, beyond: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        answer = get(client, f"/v1/jobs/{job_id}")
        if answer is not None and answer.status_code == 200:
            job = answer.json()
            if job["status"] in TERMINAL:
                raise RuntimeError(f"redis restart: job {job_id} ended {job['status']}")
            if job["status"] == "running" and job["progress"]["iteration"] > beyond:
                return int(job["progress"]["iteration"])
        time.sleep(0.02)
    raise RuntimeError(f"redis restart: job {job_id} made no progress beyond {beyond}")


def crash_once(workdir: Path, aof: bool) -> dict[str, Any]:
    """One deployment, one crash: seconds until progress moves, queued jobs kept."""
    aof_dir = workdir / f"aof-{uuid.uuid4().hex[:6]}" if aof else None
    if aof_dir is not None:
        aof_dir.mkdir()
    server: RedisServer = start_redis(aof_dir=aof_dir, log=workdir / "redis-restart.log")
    env = stack_env(server.url, DESCENT_KEY_PREFIX=f"rr-{uuid.uuid4().hex[:6]}")
    worker = start_worker(env, name="restart", log=workdir / "restart-worker.log",
                          args=["--without-mingle", "--without-gossip"])
    api = start_api(env, log=workdir / "restart-api.log", args=["--no-access-log"])
    try:
        worker.wait_online(60)
        api.wait_ready(60, watch=[worker])
        # All six jobs are sent to the worker at once: five messages wait in the broker
        # queue behind the running job's (the tenant's max_running_jobs holds none back).
        headers = bearer(make_bench_tenant(env))
        with httpx.Client(base_url=api.url, timeout=10, trust_env=False,
                          headers=headers) as client:
            running = client.post("/v1/jobs", json=SPEC).json()["id"]
            queued = [client.post("/v1/jobs", json={**SPEC, "seed": seed}).json()["id"]
                      for seed in range(1, QUEUED + 1)]
            wait_running(client, running, 0)
            time.sleep(1.2)  # everything above is over a second old: the AOF has it
            crashed = time.monotonic()
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            server = start_redis(aof_dir=aof_dir, port=server.port,
                                 log=workdir / "redis-restart.log", timeout=30)
            back = time.monotonic() - crashed
            kept = sum(1 for job_id in queued
                       if (answer := get(client, f"/v1/jobs/{job_id}")) is not None
                       and answer.status_code == 200)
            moving: float | None = None  # stays None when the job itself was lost
            attempts = None
            answer = get(client, f"/v1/jobs/{running}")
            if answer is not None and answer.status_code == 200:
                # Moving again: beyond what the first read after the restart shows (the
                # AOF has the progress of up to a second before the crash).
                wait_running(client, running, int(answer.json()["progress"]["iteration"]))
                moving = time.monotonic() - crashed
                attempts = client.get(f"/v1/jobs/{running}").json()["attempts"]
            for job_id in [running, *queued]:  # the worker stops at once, not after them
                with contextlib.suppress(httpx.HTTPError):
                    client.post(f"/v1/jobs/{job_id}/cancel")
    finally:
        api.stop()
        worker.stop(timeout=20)
        server.stop()
    return {"back": back, "moving": moving, "kept": kept, "attempts": attempts}


def measure(workdir: Path, plan: Plan) -> dict[str, Any]:
    rounds = max(1, plan.recovery_rounds)
    log(f"6. redis restarts: {rounds} crash(es) with an AOF, 1 without")
    with_aof = []
    for _ in range(rounds):
        run = crash_once(workdir, aof=True)
        log(f"redis restart (AOF): back in {run['back']:.2f} s, progress moving after "
            f"{run['moving'] if run['moving'] is None else round(run['moving'], 2)} s, "
            f"attempts {run['attempts']}, {run['kept']}/{QUEUED} queued jobs kept")
        with_aof.append(run)
    control = crash_once(workdir, aof=False)
    log(f"redis restart (no AOF): {control['kept']}/{QUEUED} queued jobs kept")
    moving = [run["moving"] for run in with_aof if run["moving"] is not None]
    return {"runs": with_aof, "control": control,
            "moving": median(moving) if moving else None,
            "kept": min(run["kept"] for run in with_aof),
            "attempts": max((run["attempts"] or 0) for run in with_aof)}


def rows(result: dict[str, Any]) -> list[Row]:
    moving = result["moving"]
    shown = "never" if moving is None else f"{moving:.2f} s (median of {len(result['runs'])})"
    return [
        ("6 Redis crash -> running job's progress moving", shown, "(report)", ""),
        ("6   the running job's attempts after the crash (most)", str(result["attempts"]),
         "1", "ok" if result["attempts"] == 1 else "EXTRA"),
        ("6 queued jobs kept through a crash, AOF", f"{result['kept']}/{QUEUED}",
         f"{QUEUED}/{QUEUED}", "ok" if result["kept"] == QUEUED else "LOST"),
        ("6   negative control, no AOF", f"{result['control']['kept']}/{QUEUED}",
         "(report)", ""),
    ]
