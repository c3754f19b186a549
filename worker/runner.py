"""One attempt at one job: lease it, run the trainer, write progress and the outcome."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from functools import lru_cache
from typing import Any

import numpy as np
import redis
from celery.exceptions import SoftTimeLimitExceeded

from app.keys import TERMINAL_STATUSES
from app.records import LeaseLost
from app.settings import Settings
from app.store import JobStore
from trainer import (
    Callbacks,
    Checkpoint,
    Dataset,
    DatasetError,
    Diverged,
    EpochRecord,
    InvalidConfig,
    Stopped,
    TrainConfig,
    TrainerError,
    TrainResult,
    dataset_info,
    estimate_cost,
    load_dataset,
    model_to_bytes,
    train,
)

logger = logging.getLogger(__name__)

@lru_cache(maxsize=4)
def cached_dataset(name: str, data_dir: str | None) -> Dataset:
    """Datasets are read once per worker process (Fashion-MNIST takes about a second)."""
    return load_dataset(name, data_dir)


def new_token() -> str:
    return uuid.uuid4().hex


class JobRunner:
    """Runs job `job_id` once under a lease; every outcome ends in exactly one terminal state."""

    def __init__(self, store: JobStore, settings: Settings, job_id: str) -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.token = new_token()
        self._cancel = False
        self._lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> str:
        """What happened, for the log: the terminal status, or why nothing was done."""
        job = self.store.get_job(self.job_id)
        if job is None:
            return "unknown job"
        if job["status"] in TERMINAL_STATUSES:
            return f"already {job['status']}"
        if not self._take_lease():
            return "another worker holds the lease"
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            return self._attempt(job)
        except LeaseLost:
            return "lease lost to another worker"
        finally:
            self._done.set()
            heartbeat.join()
            self.store.release_lease(self.job_id, self.token)

    def _take_lease(self) -> bool:
        """Wait out the lease of a worker that died (it lapses); a live holder keeps it."""
        deadline = time.monotonic() + self.settings.lease_seconds + self.settings.heartbeat_seconds
        while True:
            if self.store.acquire_lease(self.job_id, self.token, self.settings.lease_seconds):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(min(0.2, self.settings.heartbeat_seconds))

    def _heartbeat(self) -> None:
        while not self._done.wait(self.settings.heartbeat_seconds):
            try:
                if not self.store.renew_lease(self.job_id, self.token, self.settings.lease_seconds):
                    self._lost.set()
                    return
            except Exception:  # a blip in Redis: the next beat tries again
                logger.warning("job %s: heartbeat failed", self.job_id, exc_info=True)

    def _attempt(self, job: dict[str, Any]) -> str:
        attempt = self.store.start_attempt(self.job_id, self.token)
        if attempt is None:
            return "already finished"
        if attempt > self.settings.max_attempts:
            return self._fail(
                "worker_lost",
                f"the job's worker was lost {attempt - 1} times; giving up after "
                f"{self.settings.max_attempts} attempts",
            )
        spec = job["spec"]
        try:
            config = TrainConfig.from_dict(spec)
            data_dir = self.settings.data_dir
            info = dataset_info(spec["dataset"], data_dir)
            dataset = cached_dataset(spec["dataset"], data_dir)
            estimate = estimate_cost(config, info.n_train, info.n_features, info.n_classes)
            checkpoints = self._checkpoints_fit(estimate.checkpoint_bytes)
            resume = self._checkpoint() if checkpoints else None
            done = (resume.iteration, resume.epoch) if resume else (0, 0)
            self.store.truncate_curve(self.job_id, done[0], done[1], token=self.token)
            progress = _Progress(config.epochs, estimate.iterations, done[0])
            callbacks = self._callbacks(progress, checkpoints)
            result = train(config, dataset, callbacks, resume=resume)
            weights, weights_warnings = self._weights_to_keep(result, config)
        except Stopped:
            if self._lost.is_set():
                return "lease lost to another worker"
            self.store.finish(self.job_id, "cancelled", token=self.token)
            return "cancelled"
        except Diverged as exc:
            return self._fail("diverged", str(exc))
        except SoftTimeLimitExceeded:
            limit = self.settings.task_soft_time_limit
            return self._fail("time_limit", f"the job ran longer than the limit of {limit:g} s")
        except DatasetError as exc:
            return self._fail("invalid_dataset", str(exc))
        except InvalidConfig as exc:
            return self._fail("invalid_config", str(exc))
        except (LeaseLost, redis.RedisError):
            raise  # not the job's fault: the task retries (Redis) or lets the new owner run
        except Exception as exc:
            logger.exception("job %s: internal error", self.job_id)
            return self._fail("internal", f"{type(exc).__name__}: {exc}")
        self.store.finish(
            self.job_id,
            "succeeded",
            token=self.token,
            metrics=result.metrics,
            warnings=result.warnings + weights_warnings,
            weights=weights,
        )
        return "succeeded"

    def _checkpoints_fit(self, size: int) -> bool:
        """Whether the job's checkpoints fit the budget; if not, the job says so at once."""
        limit = self.settings.max_checkpoint_bytes
        if size <= limit:
            return True
        self.store.add_warning(
            self.job_id,
            f"no checkpoints are kept: each would take about "
            f"{_over(size, limit, 'DESCENT_MAX_CHECKPOINT_BYTES')}; if its worker is lost, "
            "this job restarts from the beginning",
        )
        return False

    def _weights_to_keep(
        self, result: TrainResult, config: TrainConfig
    ) -> tuple[bytes | None, list[str]]:
        """The trained model's bytes, or None and the warning why (over the budget)."""
        size, limit = sum(p.nbytes for p in result.params), self.settings.max_weights_bytes
        if size <= limit:
            return model_to_bytes(result.params, config.activation, config.loss), []
        setting = "DESCENT_MAX_WEIGHTS_BYTES"
        return None, [f"the trained weights are not kept: {_over(size, limit, setting)}"]

    def _checkpoint(self) -> Checkpoint | None:
        """The last epoch's checkpoint; an unreadable one means a clean restart."""
        blob = self.store.load_checkpoint(self.job_id)
        if not blob:
            return None
        try:
            return Checkpoint.from_bytes(blob)
        except TrainerError:
            logger.warning("job %s: unreadable checkpoint; restarting cleanly", self.job_id)
            return None

    def _fail(self, code: str, message: str) -> str:
        self.store.finish(
            self.job_id, "failed", token=self.token, error={"code": code, "message": message}
        )
        return f"failed: {code}"

    def _callbacks(self, progress: _Progress, checkpoints: bool) -> Callbacks:
        def on_iterations(first: int, losses: np.ndarray) -> None:
            last = first + len(losses) - 1
            self._cancel = self.store.record_iterations(
                self.job_id, self.token, first, losses, progress.at(iteration=last)
            )

        def on_epoch(record: EpochRecord) -> None:
            self._cancel = self.store.record_epoch(
                self.job_id,
                self.token,
                record.to_dict(),
                progress=progress.at(iteration=record.iteration, epoch=record.epoch),
            )

        def on_checkpoint(checkpoint: Checkpoint) -> None:
            self.store.save_checkpoint(self.job_id, self.token, checkpoint.to_bytes())

        def should_stop() -> bool:
            return self._cancel or self._lost.is_set()

        return Callbacks(
            on_iterations=on_iterations,
            on_epoch=on_epoch,
            on_checkpoint=on_checkpoint if checkpoints else None,
            should_stop=should_stop,
            report_every=self.settings.progress_flush_iterations,
            report_seconds=self.settings.progress_flush_seconds,
        )


def _over(size: int, limit: int, setting: str) -> str:
    return f"{size / 2**20:,.1f} MiB, over the limit of {limit / 2**20:,.1f} MiB ({setting})"


class _Progress:
    """The job's `progress` object, with an ETA from this attempt's pace."""

    def __init__(self, epochs: int, iterations: int, resumed_at: int) -> None:
        self.epochs = epochs
        self.iterations = iterations
        self.started = time.monotonic()
        self.resumed_at = resumed_at
        self.epoch = 0

    def at(self, iteration: int, epoch: int | None = None) -> dict[str, Any]:
        if epoch is not None:
            self.epoch = epoch
        done_here = iteration - self.resumed_at
        elapsed = time.monotonic() - self.started
        remaining = max(self.iterations - iteration, 0)
        eta = elapsed / done_here * remaining if done_here > 0 else None
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "iteration": iteration,
            "iterations": self.iterations,
            "fraction": min(iteration / self.iterations, 1.0) if self.iterations else 0.0,
            "eta_seconds": eta,
        }
