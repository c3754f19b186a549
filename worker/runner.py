"""One attempt at one job: lease it, run the trainer, write progress and the outcome."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from app.data import Datasets
from app.settings import Settings
from app.store.base import UNREACHABLE
from app.store.keys import TERMINAL_STATUSES
from app.store.leases import LeaseHolder
from app.store.records import LeaseLost
from app.store.sweeps import SweepStore
from app.store.uploads import UploadStore
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
    estimate_cost,
    model_to_bytes,
    train,
)
from worker.outage import OutagePolicy, RedisOutage

logger = logging.getLogger(__name__)

T = TypeVar("T")
CANCEL_MESSAGE = b"1"  # what app.store.lua's CANCEL publishes on the job's channel
TrainFn = Callable[..., TrainResult]


def new_token() -> str:
    return uuid.uuid4().hex


class JobRunner:
    """Runs job `job_id` once under a lease; every outcome ends in exactly one terminal state.

    A Redis outage is waited out (within DESCENT_REDIS_OUTAGE_SECONDS) with the run's state
    kept in memory: afterwards the lease is taken back and what the outage may have lost
    is written again, so the job goes on with no attempt used.
    """

    def __init__(
        self, holder: LeaseHolder, settings: Settings, job_id: str, *, train_fn: TrainFn = train,
        sweeps: SweepStore | None = None, datasets: Datasets | None = None,
    ) -> None:
        self.holder = holder
        self.datasets = datasets or Datasets(
            UploadStore(holder.client, prefix=holder.keys.prefix), settings.data_dir)
        self.sweeps = sweeps  # a sweep's trial asks it at each epoch's end: pruned?
        self.sweep_id: str | None = None  # set when the job turns out to be a sweep's trial
        self._pruned: str | None = None  # why the median rule ended this trial
        self.settings = settings
        self.job_id = job_id
        self.token = new_token()
        self.outage = OutagePolicy(settings.redis_outage_seconds)
        self._train = train_fn
        self._halt = threading.Event()  # the loop's one cheap check: stop before the next batch
        self._lost = False  # ...because the lease went to another worker (else: cancelled)
        self._done = threading.Event()
        self._written = _Written()
        self._pending: tuple[int, np.ndarray] | None = None
        self._leased = False  # only a lease we held is taken back after an outage

    def _store(self, call: Callable[[], T]) -> T:
        """A store call that waits out a Redis outage, then recovers before retrying.

        A write refused because our lease lapsed (Redis stalled or restarted while this
        thread was busy, so it never saw an error) takes the lease back, writes again
        what may have been lost, and is retried once; if another worker holds the lease,
        or the job has ended, LeaseLost stands."""
        try:
            return self.outage.call(call, on_recovered=self._recover)
        except LeaseLost:
            if not self._leased or self._lost or self._halt.is_set():
                raise
            self.outage.call(self._recover)
            return self.outage.call(call, on_recovered=self._recover)

    def _recover(self) -> None:
        if not self._leased:
            return
        if not self._take_back_lease():
            raise LeaseLost(self.job_id, self.token)
        # Redis fsyncs its AOF every second: a restart may have lost our last writes.
        self._written.rewrite(self.holder, self.job_id, self.token)

    def run(self) -> str:
        """What happened, for the log: the terminal status, or why nothing was done."""
        job = self._store(lambda: self.holder.get_job(self.job_id))
        if job is None:
            return "unknown job"
        self.sweep_id = job.get("sweep_id")
        if job["status"] in TERMINAL_STATUSES:
            return f"already {job['status']}"
        if not self._take_lease():
            return "another worker holds the lease"
        threads = [
            threading.Thread(target=self._heartbeat, daemon=True),
            threading.Thread(target=self._watch_cancel, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            return self._attempt(job)
        except LeaseLost:
            return "lease lost to another worker"
        finally:
            self._done.set()
            self._wake_watcher()
            for thread in threads:
                thread.join()
            try:
                self.holder.release_lease(self.job_id, self.token)
            except UNREACHABLE:
                logger.warning("job %s: could not release the lease; it lapses", self.job_id)

    def _take_back_lease(self) -> bool:
        """Take back a lease that lapsed; if another worker holds it, or the job ended
        meanwhile, stop the run before its next batch and return False."""
        held = self.holder.reclaim_lease(self.job_id, self.token, self.settings.lease_seconds)
        if held == "ours":
            return True
        if held == "taken":
            logger.warning("job %s: another worker took the lease", self.job_id)
        self._lost = held == "taken"
        self._halt.set()
        return False

    def _wake_watcher(self) -> None:
        """The cancel watcher blocks on its channel: a message there ends its wait now,
        so the next job does not wait for its poll to time out (without Redis, it notices
        the end within that timeout)."""
        with contextlib.suppress(*UNREACHABLE):
            self.holder.client.publish(self.holder.cancel_channel(self.job_id), self.token)

    def _take_lease(self) -> bool:
        """Wait out the lease of a worker that died (it lapses); a live holder keeps it."""
        deadline = time.monotonic() + self.settings.lease_seconds + self.settings.heartbeat_seconds
        while True:
            if self._store(
                lambda: self.holder.acquire_lease(
                    self.job_id, self.token, self.settings.lease_seconds
                )
            ):
                self._leased = True
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(min(0.2, self.settings.heartbeat_seconds))

    def _heartbeat(self) -> None:
        """Renew the lease; take it back if an outage let it lapse; hear of a cancel."""
        ttl = self.settings.lease_seconds
        while not self._done.wait(self.settings.heartbeat_seconds):
            try:
                state = self.holder.renew_lease(self.job_id, self.token, ttl)
                if state == 0 and not self._take_back_lease():  # lapsed, or the job ended
                    return
                if state == 2:
                    self._halt.set()
            except UNREACHABLE:  # an outage: the next beat tries again
                logger.debug("job %s: heartbeat failed", self.job_id, exc_info=True)
            except Exception:
                logger.warning("job %s: heartbeat failed", self.job_id, exc_info=True)

    def _watch_cancel(self) -> None:
        """Hear a cancel request the moment it is made (the heartbeat is the fallback)."""
        channel = self.holder.cancel_channel(self.job_id)
        while not self._done.is_set():
            pubsub = self.holder.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                while not self._done.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    # Only the CANCEL script's "1" is a cancel: an attempt that ends wakes
                    # its own watcher with its token, which other attempts ignore.
                    if message is not None and message["data"] == CANCEL_MESSAGE:
                        self._halt.set()
                        return
            except UNREACHABLE:
                self._done.wait(0.5)
            except Exception:
                logger.warning("job %s: cancel watcher failed", self.job_id, exc_info=True)
                return
            finally:
                pubsub.close()

    def _attempt(self, job: dict[str, Any]) -> str:
        attempt = self._store(lambda: self.holder.start_attempt(self.job_id, self.token))
        if attempt is None:
            return "already finished"
        if attempt > self.settings.max_attempts:
            return self._fail(
                "worker_lost",
                f"the job's worker was lost {attempt - 1} times; giving up after "
                f"{self.settings.max_attempts} attempts",
            )
        if job["cancel_requested"]:
            self._halt.set()
        spec = job["spec"]
        try:
            config = TrainConfig.from_dict(spec)
            # An upload is read from Redis: an outage there is waited out like any other.
            info, dataset = self._store(lambda: self.datasets.open(spec["dataset"]))
            estimate = estimate_cost(
                config, info.n_train, info.n_features, info.n_classes, n_test=info.n_test
            )
            checkpoints = self._checkpoints_fit(estimate.checkpoint_bytes)
            resume = self._checkpoint() if checkpoints else None
            done = (resume.iteration, resume.epoch) if resume else (0, 0)
            self._store(
                lambda: self.holder.truncate_curve(
                    self.job_id, done[0], done[1], token=self.token
                )
            )
            progress = _Progress(config.epochs, estimate.iterations, done[0])
            per_epoch = estimate.iterations // config.epochs
            callbacks = self._callbacks(progress, checkpoints, per_epoch)
            try:
                # A sweep's trial never reads its test set: the sweep evaluates its winner's.
                result = self._train(config, dataset, callbacks, resume=resume,
                                     evaluate_test=self.sweep_id is None)
            finally:
                self.flush_pending()
            if self._pruned is not None:  # pruned at the last epoch's end
                raise Stopped(result.metrics["iterations"])
            weights, weights_warnings = self._weights_to_keep(result, config, dataset)
        except Stopped:
            if self._lost:
                return "lease lost to another worker"
            status = "cancelled" if self._pruned is None else "pruned"
            warnings = None if self._pruned is None else [self._pruned]
            if self._store(
                lambda: self.holder.finish(self.job_id, status, token=self.token,
                                           warnings=warnings)
            ):
                return status
            return "ended elsewhere"  # e.g. the reaper ended it during an outage
        except Diverged as exc:
            return self._fail("diverged", str(exc))
        except SoftTimeLimitExceeded:
            limit = self.settings.task_soft_time_limit
            return self._fail("time_limit", f"the job ran longer than the limit of {limit:g} s")
        except DatasetError as exc:
            return self._fail("invalid_dataset", str(exc))
        except InvalidConfig as exc:
            return self._fail("invalid_config", str(exc))
        except (LeaseLost, RedisOutage):
            raise  # not the job's fault: the new owner runs it, or the reaper re-queues it
        except Exception as exc:
            logger.exception("job %s: internal error", self.job_id)
            return self._fail("internal", f"{type(exc).__name__}: {exc}")
        self._store(
            lambda: self.holder.finish(
                self.job_id,
                "succeeded",
                token=self.token,
                metrics=result.metrics,
                warnings=result.warnings + weights_warnings,
                weights=weights,
            )
        )
        return "succeeded"

    def flush_pending(self) -> None:
        """Write losses held back for an epoch row that never came (the run ended)."""
        if self._pending is None:
            return
        first, losses = self._pending
        self._pending = None
        now = self._written.progress or {}
        holder, job_id, token = self.holder, self.job_id, self.token
        self._store(lambda: holder.record_iterations(job_id, token, first, losses, now))

    def _judge(self, epoch: int, row: dict[str, Any]) -> None:
        """A sweep's trial, at an epoch's end: does its median rule prune it? (From the
        epoch rows in Redis; the run stops before its next mini-batch.)"""
        sweeps, sweep_id = self.sweeps, self.sweep_id
        if sweeps is None or sweep_id is None or self._pruned is not None:
            return
        prune, why = self._store(lambda: sweeps.prune_verdict(sweep_id, self.job_id, epoch, row))
        if prune:
            logger.info("job %s: %s", self.job_id, why)
            self._pruned = why
            self._halt.set()

    def _checkpoints_fit(self, size: int) -> bool:
        """Whether the job's checkpoints fit the budget; if not, the job says so at once."""
        limit = self.settings.max_checkpoint_bytes
        if size <= limit:
            return True
        warning = (
            f"no checkpoints are kept: each would take about "
            f"{_over(size, limit, 'DESCENT_MAX_CHECKPOINT_BYTES')}; if its worker is lost, "
            "this job restarts from the beginning"
        )
        self._store(lambda: self.holder.add_warning(self.job_id, warning))
        return False

    def _weights_to_keep(
        self, result: TrainResult, config: TrainConfig, dataset: Dataset
    ) -> tuple[bytes | None, list[str]]:
        """The trained model's bytes (with its dataset's name, class labels and the
        preprocessing of its inputs), or None and the warning why (over the budget)."""
        size, limit = sum(p.nbytes for p in result.params), self.settings.max_weights_bytes
        if size <= limit:
            return model_to_bytes(result.params, config.activation, config.loss,
                                  dataset=dataset.name, classes=dataset.classes,
                                  preprocess=result.preprocess), []
        setting = "DESCENT_MAX_WEIGHTS_BYTES"
        return None, [f"the trained weights are not kept: {_over(size, limit, setting)}"]

    def _checkpoint(self) -> Checkpoint | None:
        """The last epoch's checkpoint; an unreadable one means a clean restart."""
        blob = self._store(lambda: self.holder.load_checkpoint(self.job_id))
        if not blob:
            return None
        try:
            return Checkpoint.from_bytes(blob)
        except TrainerError:
            logger.warning("job %s: unreadable checkpoint; restarting cleanly", self.job_id)
            return None

    def _fail(self, code: str, message: str) -> str:
        error = {"code": code, "message": message}
        self._store(
            lambda: self.holder.finish(self.job_id, "failed", token=self.token, error=error)
        )
        return f"failed: {code}"

    def _callbacks(
        self, progress: _Progress, checkpoints: bool, per_epoch: int
    ) -> Callbacks:
        holder, job_id, token = self.holder, self.job_id, self.token

        def on_iterations(first: int, losses: np.ndarray) -> None:
            self.flush_pending()
            last = first + len(losses) - 1
            now = progress.at(iteration=last)
            self._written.losses(first, losses, now)
            if last % per_epoch == 0:  # an epoch's end: written with its row (on_epoch)
                self._pending = (first, losses)
                return
            if self._store(lambda: holder.record_iterations(job_id, token, first, losses, now)):
                self._halt.set()

        def on_epoch(record: EpochRecord) -> None:
            row = record.to_dict()
            now = progress.at(iteration=record.iteration, epoch=record.epoch)
            self._written.epoch(row, now)
            first, losses = self._pending or (1, None)
            self._pending = None
            if self._store(
                lambda: holder.record_epoch(
                    job_id, token, row, progress=now, first_iteration=first, losses=losses
                )
            ):
                self._halt.set()
            self._judge(record.epoch, row)

        def on_checkpoint(checkpoint: Checkpoint) -> None:
            blob = checkpoint.to_bytes()
            self._store(lambda: holder.save_checkpoint(job_id, token, blob))

        return Callbacks(
            on_iterations=on_iterations,
            on_epoch=on_epoch,
            on_checkpoint=on_checkpoint if checkpoints else None,
            should_stop=self._halt.is_set,
            report_every=self.settings.progress_flush_iterations,
            report_seconds=self.settings.progress_flush_seconds,
            checkpoint_seconds=self.settings.checkpoint_seconds,
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


class _Written:
    """What this attempt wrote to the curve, kept so that it can be written again after a
    Redis restart that lost the last second of writes (at most 4 bytes an iteration)."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.chunks: list[np.ndarray] = []
        self.rows: list[dict[str, Any]] = []
        self.progress: dict[str, Any] | None = None

    def losses(self, first: int, losses: np.ndarray, progress: dict[str, Any]) -> None:
        if self.first is None:
            self.first = first
        self.chunks.append(np.array(losses, dtype=np.float32))
        self.progress = progress

    def epoch(self, row: dict[str, Any], progress: dict[str, Any]) -> None:
        self.rows.append(row)
        self.progress = progress

    def rewrite(self, holder: LeaseHolder, job_id: str, token: str) -> None:
        """Write it all again, each epoch row in one step with the losses up to its
        iteration (as on_epoch does), so that no poll sees an epoch's last loss before
        its row."""
        if self.first is None or self.progress is None:
            return
        losses = np.concatenate(self.chunks)
        self.chunks = [losses]
        start = self.first
        for row in self.rows:
            upto = int(row["iteration"])
            part = losses[start - self.first : upto - self.first + 1]
            holder.record_epoch(job_id, token, row, first_iteration=start, losses=part)
            start = upto + 1
        rest = losses[start - self.first :]
        if len(rest):
            holder.record_iterations(job_id, token, start, rest, self.progress)
        else:
            holder.record_epoch(job_id, token, self.rows[-1], progress=self.progress)
