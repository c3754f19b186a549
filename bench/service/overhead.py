"""1. Service overhead: one job through HTTP + Celery + Redis vs the same `trainer.train`
call in this process (and the worker's JobRunner in this process, without Celery),
interleaved rounds, medians. Target: <= 3 % added."""

from __future__ import annotations

import time
from typing import Any

from app.api.schemas import JobSpec
from bench.service.harness import HIDDEN, Plan, Row, Stack, Workload, job_spec
from bench.service.log import log
from bench.service.stats import median, median_ci, parse_time, run_seconds, verdict
from trainer import TrainConfig, load_dataset, train
from worker.runner import JobRunner

TARGET = 1.03


def job_config(epochs: int) -> TrainConfig:
    return TrainConfig(hidden_sizes=tuple(HIDDEN), epochs=epochs)


def run_in_process(stack: Stack, spec: dict[str, Any]) -> float:
    """The worker's own code path (JobRunner: lease, store writes, checkpoints) without
    Celery, in this process: its wall seconds."""
    job_id = stack.create_local_job(JobSpec.model_validate(spec).stored_spec())
    started = time.perf_counter()
    outcome = JobRunner(stack.local_holder, stack.settings, job_id).run()
    seconds = time.perf_counter() - started
    if outcome != "succeeded":
        raise RuntimeError(f"in-process JobRunner: {outcome}")
    return seconds


def measure(stack: Stack, plan: Plan, work: Workload) -> dict[str, Any]:
    log(f"1. service overhead: {plan.overhead_rounds} interleaved rounds")
    if stack.worker is None or stack.concurrency != 1:
        stack.start_worker(1)
    epochs = work.overhead_epochs
    data = load_dataset(work.dataset)
    config, spec = job_config(epochs), job_spec(work.dataset, epochs)
    train(config, data)  # warm all three: caches, the runner's and the worker's dataset
    run_in_process(stack, spec)
    stack.wait(stack.submit(spec)["id"], 0.05)
    direct: list[float] = []
    runner: list[float] = []
    own: list[float] = []
    wall: list[float] = []
    queued: list[float] = []

    def run_direct() -> None:
        started = time.perf_counter()
        train(config, data)
        direct.append(time.perf_counter() - started)

    def run_runner() -> None:
        runner.append(run_in_process(stack, spec))

    def run_service() -> None:
        submitted = time.monotonic()
        quiet = 0.8 * min(direct) if direct else 0.0
        job, _, done = stack.wait(stack.submit(spec)["id"], 0.02, quiet=quiet)
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

    def paired(values: list[float]) -> float:
        return median([v / d for v, d in zip(values, direct, strict=True)])

    def paired_ci(values: list[float]) -> tuple[float, float] | None:
        if len(values) < 5:  # too few rounds for the interval to mean anything
            return None
        return median_ci([v / d for v, d in zip(values, direct, strict=True)])

    return {
        "direct": median(direct), "runner": median(runner), "own": median(own),
        "wall": median(wall), "queued": median(queued),
        "runner_ratio": median(runner) / median(direct),
        "own_ratio": median(own) / median(direct),
        "wall_ratio": median(wall) / median(direct),
        "paired_runner": paired(runner), "paired_own": paired(own), "paired_wall": paired(wall),
        "ci_own": paired_ci(own), "ci_wall": paired_ci(wall),
        "spread": {name: (min(v), max(v)) for name, v in
                   (("direct", direct), ("runner", runner), ("job", own))},
    }


def interval(bounds: tuple[float, float] | None) -> str:
    return "n/a (under 5 rounds)" if bounds is None else f"{bounds[0]:.3f}-{bounds[1]:.3f}x"


def rows(o: dict[str, Any], others: float) -> list[Row]:
    return [
        ("1 direct train() (median)", f"{o['direct']:.3f} s", "", ""),
        ("1 in-process JobRunner, no Celery (median)", f"{o['runner']:.3f} s "
         f"({o['runner_ratio']:.3f}x, paired {o['paired_runner']:.3f}x)", "", ""),
        ("1 job started->finished (median)", f"{o['own']:.3f} s", "", ""),
        ("1 job submit->succeeded (median)", f"{o['wall']:.3f} s", "", ""),
        ("1 overhead, job run / direct", f"{o['own_ratio']:.3f}x "
         f"(paired {o['paired_own']:.3f}x)", "<= 1.03x",
         verdict(o["own_ratio"] <= TARGET, others, o["ci_own"], TARGET)),
        ("1   paired ratio, 90% bootstrap interval", interval(o["ci_own"]), "", ""),
        ("1 overhead, submit->succeeded / direct", f"{o['wall_ratio']:.3f}x "
         f"(paired {o['paired_wall']:.3f}x)", "<= 1.03x",
         verdict(o["wall_ratio"] <= TARGET, others, o["ci_wall"], TARGET)),
        ("1   paired ratio, 90% bootstrap interval", interval(o["ci_wall"]), "", ""),
    ]


def notes(o: dict[str, Any]) -> list[str]:
    spread = ", ".join(f"{name} {lo:.3f}-{hi:.3f} s" for name, (lo, hi) in o["spread"].items())
    return [f"overhead: created->started median {o['queued'] * 1000:.0f} ms; "
            f"min-max: {spread}; the client sleeps 0.8x the fastest direct run, "
            "then polls GET /v1/jobs/{id} every 20 ms"]
