"""The training task: a thin adapter from a Celery message (a job id) to a JobRunner."""

from __future__ import annotations

import logging
from functools import lru_cache

from app.data import Datasets
from app.settings import get_settings
from app.store.leases import LeaseHolder
from app.store.queue import EVALUATE_TASK, TRAIN_TASK
from app.store.sweeps import SweepStore
from app.store.uploads import UploadStore
from trainer import DatasetError, TrainConfig, evaluate_test_set, overfitting, read_model
from worker.celery_app import celery_app
from worker.outage import RedisOutage
from worker.runner import JobRunner

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def lease_holder() -> LeaseHolder:
    """One store role (and Redis connection pool) per worker process, made after the fork."""
    return LeaseHolder.from_settings(get_settings())


@lru_cache(maxsize=1)
def sweep_store() -> SweepStore:
    """The sweeps' role, on the lease holder's connection pool."""
    return SweepStore.from_settings(get_settings(), lease_holder().client)


@lru_cache(maxsize=1)
def datasets() -> Datasets:
    """Built-in datasets and uploads, each read once per worker process."""
    settings = get_settings()
    return Datasets(UploadStore.from_settings(settings, lease_holder().client), settings.data_dir)


@celery_app.task(
    name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def train_job(job_id: str) -> str:
    """Run one attempt of the job. Nothing is retried here: bad input, divergence and time
    limits end the job; a Redis outage is waited out inside the run; a lost worker comes
    back by redelivery or the reaper."""
    runner = JobRunner(lease_holder(), get_settings(), job_id, sweeps=sweep_store(),
                       datasets=datasets())
    try:
        outcome = runner.run()
    except RedisOutage as exc:
        # The lease lapses; once Redis is back the reaper re-queues the job.
        logger.error("job %s: %s; leaving it to the reaper", job_id, exc)
        return "redis outage"
    logger.info("job %s: %s", job_id, outcome)
    if runner.sweep_id is not None:
        # The trial has ended (or was already): its sweep makes the next trial, or picks
        # its winner. If this fails, the reaper advances every active sweep.
        try:
            sweep_store().advance(runner.sweep_id)
        except Exception:
            logger.exception("sweep %s: could not advance; the reaper will", runner.sweep_id)
    return outcome


@celery_app.task(
    name=EVALUATE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def evaluate_sweep_winner(sweep_id: str) -> str:
    """Evaluate a sweep winner's test set, once in effect: a redelivered message finds the
    result recorded and does nothing."""
    sweeps = sweep_store()
    owed = sweeps.winner_to_evaluate(sweep_id)
    if owed is None:
        return "nothing owed"
    tenant, job_id = owed["tenant"], owed["winner"]["job_id"]
    job = sweeps.get_job(job_id, tenant=tenant)
    weights = sweeps.load_weights(job_id, tenant=tenant)
    metrics = sweeps.get_metrics(job_id, tenant=tenant)
    if job is None or weights is None or metrics is None:
        why = ("the winner's trained model was not kept (over DESCENT_MAX_WEIGHTS_BYTES, "
               "or expired)")
        sweeps.fail_evaluation(sweep_id, why)
        return f"failed: {why}"
    config = TrainConfig.from_dict(job["spec"])
    net, meta = read_model(weights)
    try:
        dataset = datasets().load(job["spec"]["dataset"])
    except DatasetError as exc:
        sweeps.fail_evaluation(sweep_id, str(exc))
        return f"failed: {exc}"
    test = evaluate_test_set(config, dataset, net, meta["preprocess"])
    recorded = sweeps.record_test(
        sweep_id, test, overfitting(metrics["train"]["accuracy"], test)
    )
    outcome = "test evaluated" if recorded else "recorded already"
    logger.info("sweep %s: winner %s: %s", sweep_id, job_id, outcome)
    return outcome
