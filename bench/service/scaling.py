"""3. Jobs/hour with one worker process vs two (DESCENT_WORKER_CONCURRENCY 1 vs 2),
interleaved, plus a raw-CPU control: the same training in 1 vs 2 plain processes.
Target: >= 1.8x."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import statistics
import time
from typing import Any

from bench.service.harness import JOB_TIMEOUT, START_TIMEOUT, Plan, Row, Stack, Workload, job_spec
from bench.service.log import log
from bench.service.overhead import job_config
from bench.service.signals import sigint_blocked
from bench.service.stats import parse_time, run_seconds, verdict
from trainer import load_dataset, train

TARGET = 1.8


def service_batch(stack: Stack, spec: dict[str, Any], n_jobs: int) -> dict[str, float]:
    ids = [stack.submit(spec)["id"] for _ in range(n_jobs)]
    jobs = [stack.wait(job_id, 0.1)[0] for job_id in ids]
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


def measure(stack: Stack, plan: Plan, work: Workload) -> dict[str, Any]:
    log(f"3. scaling: {plan.scaling_jobs} jobs per batch, order {plan.scaling_order}")
    spec = job_spec(work.dataset, work.scaling_epochs)
    warm = job_spec(work.dataset, 1)
    service: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for concurrency in plan.scaling_order:
        if stack.worker is None or stack.concurrency != concurrency:
            stack.start_worker(concurrency)
            stack.warm_pool(warm)
        result = service_batch(stack, spec, plan.scaling_jobs)
        service[concurrency].append(result)
        log(f"service, concurrency {concurrency}: {plan.scaling_jobs} jobs in "
            f"{result['span']:.2f} s = {result['per_hour']:.0f} jobs/h "
            f"(median job {result['run']:.2f} s)")
    stack.stop_worker()  # idle CPUs for the raw control
    raw: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    pool = RawPool(work.dataset, work.scaling_epochs)
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


def rows(s: dict[str, Any], others: float) -> list[Row]:
    return [
        ("3 service jobs/h, 1 vs 2 processes", f"{s['service'][0]:.0f} vs "
         f"{s['service'][1]:.0f}", "", ""),
        ("3 service scaling 2/1", f"{s['service_ratio']:.2f}x", ">= 1.8x",
         verdict(s["service_ratio"] >= TARGET, others)),
        ("3 raw CPU jobs/h, 1 vs 2 processes", f"{s['raw'][0]:.0f} vs {s['raw'][1]:.0f}",
         "", ""),
        ("3 raw CPU scaling 2/1 (control)", f"{s['raw_ratio']:.2f}x", "(hardware)", ""),
        ("3 service scaling / raw scaling", f"{s['service_ratio'] / s['raw_ratio']:.2f}",
         "", ""),
    ]


def notes(s: dict[str, Any]) -> list[str]:
    return [f"scaling: median service job {s['job_seconds']:.2f} s; jobs/h is "
            "n / (last finished_at - first created_at); raw: n / wall of the "
            "plain processes (dataset preloaded in both)"]
