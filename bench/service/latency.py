"""2. Submit-to-running latency with an idle worker: server clocks (created_at ->
started_at) and as a client polling every 5 ms sees it, plus the POST's round trip."""

from __future__ import annotations

import time
from typing import Any

from bench.service.harness import Plan, Row, Stack
from bench.service.log import log
from bench.service.stats import parse_time, pct, run_seconds

SPEC = {"dataset": "spiral", "hidden_sizes": [16], "epochs": 20, "batch_size": 50}


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    n_jobs = plan.latency_jobs
    log(f"2. submit-to-running latency: {n_jobs} jobs, one at a time")
    if stack.worker is None:
        stack.start_worker(1)
    stack.wait(stack.submit(SPEC)["id"], 0.05)  # warm-up
    server: list[float] = []
    client: list[float] = []
    post: list[float] = []
    run: list[float] = []
    for _ in range(n_jobs):
        time.sleep(0.2)  # the worker is idle (its last job's writes are done)
        sent = time.monotonic()
        job_id = stack.submit(SPEC)["id"]
        post.append(time.monotonic() - sent)
        job, seen, _ = stack.wait(job_id, 0.005)
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


def rows(lat: dict[str, Any]) -> list[Row]:
    return [
        ("2 created->started (server), p50/p95", f"{lat['server'][0]:.1f} / "
         f"{lat['server'][1]:.1f} ms", "(report)", ""),
        ("2 submit->seen running (client), p50/p95", f"{lat['client'][0]:.1f} / "
         f"{lat['client'][1]:.1f} ms", "(report)", ""),
        ("2 POST /v1/jobs round trip, p50/p95", f"{lat['post'][0]:.1f} / "
         f"{lat['post'][1]:.1f} ms", "", ""),
    ]
