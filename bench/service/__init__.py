"""The service benchmark's measurements, one module each, on a few shared modules.

    harness   the stack (scripts.stack), httpx, job helpers, the plan and workload
    stats     percentiles, medians and their noise, verdicts, job run times
    load      how busy the machine is besides us (psutil), waiting for it to calm down
    signals   Ctrl-C, SIGTERM and SIGHUP stop everything in order
    log       the progress lines, stamped with seconds since the start
    overhead  1. a job through the service vs the same train() call in this process
    latency   2. submit-to-running with an idle worker
    scaling   3. jobs/hour with one worker process vs two, and a raw-CPU control
    polling   4. 100 concurrent incremental pollers of a growing curve
    recovery  5. SIGKILL a whole worker mid-job: time until the job moves again
    sweeps    10. a 16-trial sweep on 2 workers, median stopping, the bookkeeping's cost

bench/service_bench.py runs them and prints one table.
"""
