"""The Celery app of the workers: Redis broker, JSON only, late acks, one message at a time."""

from __future__ import annotations

import os

# One BLAS thread per worker process: the trainer's products are small, and on a small
# machine OpenBLAS's threads cost far more than they win (bench/trainer_bench.py). Set
# before NumPy loads; scale with more worker processes instead.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from app.settings import get_settings  # noqa: E402
from app.store.queue import make_celery  # noqa: E402
from worker import broker  # noqa: E402

broker.install()  # acknowledgements that survive a Redis restart: see worker/broker.py

celery_app = make_celery(get_settings(), main="descent-worker")
celery_app.conf.include = ["worker.tasks", "worker.maintenance"]
