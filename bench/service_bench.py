"""Service benchmark: overhead, pickup latency, worker scaling, curve polling, recovery
from a killed worker and a crashed Redis, and what tenancy costs, side by side.

    python bench/service_bench.py [--quick]
        [--only overhead,latency,scaling,polling,recovery,redis,auth,burst,followers,
               dashboard,sweeps,uploads]

Starts its own redis-server, Celery worker(s) and API (uvicorn, 1 process) on 127.0.0.1
with the shared dev harness (scripts.stack), measures in one run, prints the figures next
to their targets, and stops everything it started (also on Ctrl-C). Normal mode takes
about 5 minutes (and uploads about 4 more), --quick about a minute and a half (and uploads
about 45 s more). One module per measurement, in bench/service/:

1. overhead: one job through HTTP + Celery + Redis vs the same `trainer.train` call in
   this process, interleaved rounds, medians. Target: <= 3 % added.
2. latency: submit-to-running with an idle worker (server clocks and client-observed).
3. scaling: jobs/hour with one worker process vs two (DESCENT_WORKER_CONCURRENCY 1 vs 2),
   interleaved, plus a raw-CPU control: the same training in 1 vs 2 plain processes.
   Target: >= 1.8x.
4. polling: 100 concurrent incremental pollers of a 100,000-iteration curve that a writer
   thread keeps extending: back to back on 1 API process, at 1 poll/s each, and back to
   back on 2 processes (WEB_CONCURRENCY=2). Target: p99 <= 150 ms back to back.
5. recovery: SIGKILL a whole worker (main process and pool) mid-job and start a new one;
   time from the kill until the job's progress moves again, at the default lease,
   heartbeat and reaper interval. Target: < 10 s.
6. redis: crash redis-server (SIGKILL) under a running job and 5 queued ones and restart
   it at once, with an append-only file and, as the negative control, without: time until
   the running job moves again, and how many queued jobs are still there.
7. auth: the key and quota check alone (in process, against a Redis PING), and a poll in the
   app with the check and with it replaced by a constant. Target: <= 0.3 ms.
   burst: 500 submissions from 5 tenants at once on 2 worker processes, one tenant over its
   submissions_per_minute: every 202's job ends, every refusal is a 429 with Retry-After,
   no 5xx; submit latency p50/p99.
8. followers: 1 and 200 clients follow one running job's event stream: delivery latency
   from the worker's flush to the client (p50/p99; targets 100/300 ms), and Redis
   commands per flush, which must not grow with the followers.
9. dashboard: a 100,000-point job's page in Debian's chromium (Playwright): when the curve
   arrived and how long it took to draw, from the browser's performance marks.
10. sweeps: a 16-trial grid on 2 worker processes, wall time against the ideal (target:
   efficiency >= 0.85); the same grid with median stopping (target: >= 30% of the
   trial-epochs saved, the same winner); submit latency of a 64-trial grid and the
   leaderboard's read p50/p99.
11. uploads: POST /v1/datasets of a 60,000 x 785 CSV and of the same data as .npz, from the
   first byte to the 201, in MB/s, against the parse alone in process; predict latency of
   1, 100 and 10,000 rows (p50/p99, rows/s); and the worker's dataset cache: the first and
   second job on the upload in a fresh worker. Target: 1 read of the upload for 2 jobs.
"""

from __future__ import annotations

import os

# One BLAS thread everywhere: set before NumPy loads, here and (inherited) in every child.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.service import (  # noqa: E402
    dashboard,
    followers,
    latency,
    overhead,
    polling,
    recovery,
    redis_restart,
    scaling,
    sweeps,
    tenancy,
    uploads,
)
from bench.service.harness import HIDDEN, NORMAL, QUICK, Row, Stack, Workload, scan_logs  # noqa: E402
from bench.service.load import LoadMeter, wait_for_quiet  # noqa: E402
from bench.service.log import log  # noqa: E402
from bench.service.signals import ignore_signals, interruptible  # noqa: E402
from trainer import dataset_info  # noqa: E402

MEASUREMENTS = ("overhead", "latency", "scaling", "polling", "recovery", "redis", "auth",
                "burst", "followers", "dashboard", "sweeps", "uploads")


def report(rows: list[Row], notes: list[str]) -> None:
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
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help="comma-separated measurements to run (default: all)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {unknown}; choose from {MEASUREMENTS}")
    plan = QUICK if args.quick else NORMAL
    interruptible()

    if dataset_info("fashion-mnist").available:
        work = Workload("fashion-mnist", plan.overhead_epochs, plan.scaling_epochs)
    else:  # digits is ~40x smaller: more epochs for a job of similar length
        work = Workload("digits", 120 * plan.overhead_epochs, 120 * plan.scaling_epochs)
    notes = [
        f"mode {'quick' if args.quick else 'normal'}; {os.cpu_count()} CPUs; "
        "OPENBLAS_NUM_THREADS=1 in every process",
        f"jobs: {work.dataset} {work.features}-{'-'.join(map(str, HIDDEN))}-10 sigmoid, "
        f"batch 100, {work.overhead_epochs} epochs (overhead), {work.scaling_epochs} epochs "
        "(scaling); latency jobs: spiral 2-16-3, 20 epochs",
        "API: uvicorn, 1 process, default (access) logging to a file; workers: prefork, "
        "--without-mingle --without-gossip; service times are ms-precision server stamps; "
        "HTTP client: httpx (the pollers and followers: HTTP/1.1 on asyncio streams, uvloop)",
    ]
    results: dict[str, Any] = {}
    others: dict[str, float] = {}
    load: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="descent-bench-"))
    stack = Stack(workdir)
    status = 0
    try:
        busy = wait_for_quiet(plan.quiet_wait)
        if busy:
            log(f"machine still busy, measuring anyway: {busy}")
            notes.append(f"MACHINE BUSY at the start: {busy}")
        log(f"starting redis, API (logs in {workdir})")
        stack.start()
        stack.start_worker(1)
        runs: dict[str, Callable[[], Any]] = {
            "overhead": lambda: overhead.measure(stack, plan, work),
            "latency": lambda: latency.measure(stack, plan),
            "scaling": lambda: scaling.measure(stack, plan, work),
            "polling": lambda: polling.measure(stack, plan),
            "recovery": lambda: recovery.measure(stack, plan),
            "redis": lambda: redis_restart.measure(workdir, plan),
            "auth": lambda: tenancy.measure_auth(stack, plan),
            "burst": lambda: tenancy.measure_burst(stack, plan),
            "followers": lambda: followers.measure(stack, plan),
            "dashboard": lambda: dashboard.measure(stack, plan),
            "sweeps": lambda: sweeps.measure(stack, plan, work),
            "uploads": lambda: uploads.measure(stack, plan),
        }
        for number, name in enumerate(MEASUREMENTS, start=1):
            if name not in chosen:
                continue
            meter = LoadMeter()
            results[name] = runs[name]()
            load.append(f"{number}: {meter.summary()}")
            others[name] = meter.others()
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({str(exc) or 'SIGINT'}): stopping everything", flush=True)
        status = 130
    except Exception as exc:
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}", flush=True)
        status = 1
    finally:
        ignore_signals()
        stack.stop()

    rows: list[Row] = []
    if "overhead" in results:
        rows += overhead.rows(results["overhead"], others["overhead"])
    if "latency" in results:
        rows += latency.rows(results["latency"])
    if "scaling" in results:
        rows += scaling.rows(results["scaling"], others["scaling"])
    if "polling" in results:
        rows += polling.rows(results["polling"])
        notes += polling.notes(results["polling"])
    if "overhead" in results:
        notes += overhead.notes(results["overhead"])
    if "scaling" in results:
        notes += scaling.notes(results["scaling"])
    if "recovery" in results:
        rows += recovery.rows(results["recovery"], others["recovery"])
        notes += recovery.notes(results["recovery"])
    if "redis" in results:
        rows += redis_restart.rows(results["redis"])
    if "auth" in results:
        rows += tenancy.auth_rows(results["auth"])
    if "burst" in results:
        rows += tenancy.burst_rows(results["burst"])
        notes += tenancy.burst_notes(results["burst"])
    if "followers" in results:
        rows += followers.rows(results["followers"])
    if "dashboard" in results:
        rows += dashboard.rows(results["dashboard"])
    if "sweeps" in results:
        rows += sweeps.rows(results["sweeps"])
        notes += sweeps.notes(results["sweeps"])
    if "uploads" in results:
        rows += uploads.rows(results["uploads"])
        notes += uploads.notes(results["uploads"])
    if load:
        notes.append("machine load per phase (cores): " + "; ".join(load))
    trouble = scan_logs(stack.logs, recovery.EXPECTED_LOG_LINES)
    if trouble:
        notes.append(f"{len(trouble)} warning/error line(s) in the children's logs:")
        notes.extend(f"  {line}" for line in trouble[:15])
    report(rows, notes)
    log(f"done; logs kept in {workdir}" if trouble or status else "done")
    if not trouble and not status:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
