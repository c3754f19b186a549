"""10. Sweeps, with two worker processes (DESCENT_WORKER_CONCURRENCY=2):

- efficiency: a 16-trial grid (4 learning rates x 4 momenta) from submit to `succeeded`
  (the winner's test evaluated), against the ideal, the trials' summed run times / 2.
  Target: >= 0.85.
- median stopping: the same grid with {"rule": "median", "grace_epochs": 1}: trial-epochs
  run against the run without it (target: >= 30% saved), and whether the winner is the same.
- bookkeeping: POST /v1/sweeps of a 64-trial grid (every trial admitted, the first
  `max_concurrent` made as jobs; no worker runs, and each is cancelled after), p50/p99; and
  GET /v1/sweeps/{id} (the leaderboard) of the finished 16-trial sweep and of a 64-trial one
  with every trial made, p50/p99.
"""

from __future__ import annotations

import time
from typing import Any

from app.store.records import parse_iso
from bench.service.harness import HIDDEN, Plan, Row, Stack, Workload
from bench.service.log import log
from bench.service.stats import pct

RATES = [0.01, 0.1, 0.5, 2.0]
MOMENTA = [0.0, 0.5, 0.9, 0.97]
EFFICIENCY_TARGET = 0.85
SAVED_TARGET = 0.30
WORKERS = 2


def grid(work: Workload, epochs: int, **extra: Any) -> dict[str, Any]:
    return {"base": {"dataset": work.dataset, "hidden_sizes": HIDDEN, "activation": "sigmoid",
                     "batch_size": 100, "epochs": epochs},
            "method": "grid",
            "space": {"learning_rate": {"values": RATES}, "momentum": {"values": MOMENTA}},
            "objective": "val_accuracy", "max_concurrent": 2 * WORKERS, **extra}


def _run(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    answer = stack.http.post("/v1/sweeps", json=body)
    answer.raise_for_status()
    sweep_id = answer.json()["id"]
    deadline = started + 1800
    while True:
        sweep = stack.http.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"sweep {sweep_id} still {sweep['status']} after 30 min")
        time.sleep(0.05)
    wall = time.monotonic() - started
    if sweep["status"] != "succeeded":
        raise RuntimeError(f"sweep {sweep_id} ended {sweep['status']}: {sweep['error']}")
    runs = []
    for trial in sweep["trials"]:
        job = stack.job(trial["job_id"])
        runs.append((parse_iso(job["finished_at"]) - parse_iso(job["started_at"]))
                    .total_seconds())
    return {"sweep": sweep, "wall": wall, "runs": runs,
            "epochs": sum(t["epochs_run"] for t in sweep["trials"])}


def _timed(call: Any, times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def measure(stack: Stack, plan: Plan, work: Workload) -> dict[str, Any]:
    epochs = 2 if plan.quick else 10
    log(f"10. sweeps: a 16-trial grid of {work.dataset}, {epochs} epochs, {WORKERS} worker "
        "processes; then with the median rule; then the bookkeeping")
    stack.stop_worker()
    stack.start_worker(WORKERS)
    plain = _run(stack, grid(work, epochs))
    pruned = _run(stack, grid(work, epochs, early_stopping={
        "rule": "median", "grace_epochs": 1, "min_trials": 2}))
    board_16 = _timed(lambda: stack.http.get(f"/v1/sweeps/{plain['sweep']['id']}")
                      .raise_for_status(), plan.sweep_reads)

    stack.stop_worker()  # the bookkeeping's trials must not run
    big = {**grid(work, epochs), "space": {
        "learning_rate": {"values": [0.01 * (i + 1) for i in range(8)]},
        "momentum": {"values": [0.1 * i for i in range(8)]}}}
    made: list[str] = []

    def submit() -> None:
        answer = stack.http.post("/v1/sweeps", json=big)
        answer.raise_for_status()
        made.append(answer.json()["id"])

    submits = _timed(submit, plan.sweep_submits)
    every = {**big, "max_concurrent": 64}
    submit_all = _timed(lambda: stack.http.post("/v1/sweeps", json=every)
                        .raise_for_status(), 1)
    latest = stack.http.get("/v1/sweeps", params={"limit": 1}).json()["items"][0]["id"]
    board_64 = _timed(lambda: stack.http.get(f"/v1/sweeps/{latest}").raise_for_status(),
                      plan.sweep_reads)
    for sweep_id in [*made, latest]:
        stack.http.post(f"/v1/sweeps/{sweep_id}/cancel")
    stack.start_worker(1)
    return {
        "wall": plain["wall"], "ideal": sum(plain["runs"]) / WORKERS,
        "runs": plain["runs"], "epochs_plain": plain["epochs"],
        "epochs_pruned": pruned["epochs"],
        "pruned_trials": pruned["sweep"]["counts"]["pruned"],
        "winner_plain": plain["sweep"]["winner"], "winner_pruned": pruned["sweep"]["winner"],
        "test_plain": plain["sweep"]["test"]["accuracy"],
        "test_pruned": pruned["sweep"]["test"]["accuracy"],
        "wall_pruned": pruned["wall"], "submits": submits, "submit_all": submit_all[0],
        "board_16": board_16, "board_64": board_64, "epochs": epochs,
        "dataset": work.dataset, "features": work.features,
    }


def rows(p: dict[str, Any]) -> list[Row]:
    efficiency = p["ideal"] / p["wall"]
    saved = 1 - p["epochs_pruned"] / p["epochs_plain"]
    same = p["winner_plain"]["params"] == p["winner_pruned"]["params"]

    def params(w: dict[str, Any]) -> str:
        return f"lr {w['params']['learning_rate']:g}, momentum {w['params']['momentum']:g}"

    return [
        ("10 16-trial sweep: wall / ideal (summed runs / 2)",
         f"{p['wall']:.1f} s / {p['ideal']:.1f} s", "", ""),
        ("10   efficiency (ideal / wall)", f"{efficiency:.2f}",
         f">= {EFFICIENCY_TARGET:g}", "ok" if efficiency >= EFFICIENCY_TARGET else "MISSED"),
        ("10 median stopping: trial-epochs run, without / with",
         f"{p['epochs_plain']} / {p['epochs_pruned']} ({p['pruned_trials']} pruned)", "", ""),
        ("10   trial-epochs saved", f"{saved:.0%}", f">= {SAVED_TARGET:.0%}",
         "ok" if saved >= SAVED_TARGET else "MISSED"),
        ("10   winner without / with", f"{params(p['winner_plain'])} / "
         f"{params(p['winner_pruned'])}", "the same", "ok" if same else "DIFFERS"),
        ("10   winner's test accuracy without / with",
         f"{p['test_plain']:.2%} / {p['test_pruned']:.2%}", "", ""),
        ("10 submit a 64-trial grid (4 jobs made) p50/p99",
         f"{pct(p['submits'], 50):.1f} / {pct(p['submits'], 99):.1f} ms", "(report)", ""),
        ("10 submit a 64-trial grid (64 jobs made)", f"{p['submit_all']:.1f} ms", "(report)",
         ""),
        ("10 leaderboard read, 16 finished trials p50/p99",
         f"{pct(p['board_16'], 50):.1f} / {pct(p['board_16'], 99):.1f} ms", "(report)", ""),
        ("10 leaderboard read, 64 trials made p50/p99",
         f"{pct(p['board_64'], 50):.1f} / {pct(p['board_64'], 99):.1f} ms", "(report)", ""),
    ]


def notes(p: dict[str, Any]) -> list[str]:
    runs = sorted(p["runs"])
    return [f"sweeps: {p['dataset']} {p['features']}-50-10 sigmoid, batch 100, "
            f"{p['epochs']} epochs a trial, lr {RATES} x momentum {MOMENTA}, max_concurrent "
            f"{2 * WORKERS}; trial run times {runs[0]:.2f}-{runs[-1]:.2f} s; the wall time "
            "runs from POST to the sweep's `succeeded` (the winner's test evaluated), polled "
            "every 50 ms; the pruned sweep took "
            f"{p['wall_pruned']:.1f} s"]
