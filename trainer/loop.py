"""The training loop: epochs of shuffled mini-batches, validation, checkpoints, final test."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainer.advice import (
    RECENT_EPOCHS,
    chance_loss,
    check_initial_weights,
    explode_threshold,
    learning_rate_warnings,
    rate_too_large,
    stopped_too_soon_warnings,
)
from trainer.checkpoint import Checkpoint, EpochRecord
from trainer.config import TrainConfig
from trainer.datasets import Dataset
from trainer.errors import InvalidConfig, Stopped
from trainer.metrics import Evaluation, evaluate, report_test_set
from trainer.network import Network, init_params
from trainer.numerical import numerical_gradient
from trainer.optim import SGD
from trainer.preprocess import NO_PREPROCESSING, from_meta
from trainer.reporting import Callbacks, CheckpointCadence, Clock, Reporter
from trainer.rundata import prepare, rng_streams
from trainer.splits import make_splits

Array = np.ndarray

OVERFITTING_GAP = 0.05  # train accuracy - test accuracy above this is flagged


@dataclass(frozen=True)
class TrainResult:
    """A finished run: metrics of the chosen model (test set included), warnings, weights."""

    metrics: dict[str, Any]
    warnings: list[str]
    params: list[Array] = field(repr=False)
    # How the model's raw inputs are preprocessed (the model file carries it).
    preprocess: dict[str, Any] = field(default_factory=lambda: dict(NO_PREPROCESSING))


def train(
    config: TrainConfig,
    dataset: Dataset,
    callbacks: Callbacks | None = None,
    resume: Checkpoint | None = None,
    clock: Clock = time.monotonic,
    *,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train a network on `dataset` as `config` says and evaluate the test set once, at the end.

    With `evaluate_test` False (a sweep's trial) the test set is never read: the metrics'
    `test` and `overfitting` are None; `evaluate_test_set` evaluates the chosen model later.
    Raises InvalidConfig, Diverged (the loss became non-finite or exploded; its `field`
    names the setting to blame) or Stopped (should_stop said so). A run resumed from a
    checkpoint continues bitwise identically.
    """
    config.validate()
    fit = _Fit(config, dataset, callbacks or Callbacks(), clock)
    fit.evaluate_test = evaluate_test
    if resume is None:
        fit.start()
    else:
        fit.restore(resume)
    with np.errstate(over="ignore"):  # saturated sigmoid units: see functions.sigmoid_
        while not fit.finished():
            fit.train_epoch()
            fit.end_epoch()
    return fit.result()


@dataclass
class _Best:
    """The model the run will return: the epoch of least validation loss so far or, without
    a validation set, simply the last epoch."""

    params: list[Array]
    epoch: int = 0
    val_loss: float | None = None  # None before the first epoch and without validation
    stale_epochs: int = 0  # epochs since the last improvement: what early stopping counts

    def improves(self, record: EpochRecord) -> bool:
        if record.val_loss is None:  # no validation set: the last epoch is the best
            return True
        return self.val_loss is None or record.val_loss < self.val_loss

    def observe(self, record: EpochRecord, params: list[Array]) -> None:
        if not self.improves(record):
            self.stale_epochs += 1
            return
        self.epoch, self.val_loss, self.stale_epochs = record.epoch, record.val_loss, 0
        for mine, p in zip(self.params, params, strict=True):
            mine[...] = p


class _Fit:
    """One run of the loop, in the spirit of scikit-learn's `_fit_stochastic`: the data, the
    network and its optimiser, and where the run is (all that a checkpoint restores)."""

    def __init__(
        self, config: TrainConfig, dataset: Dataset, callbacks: Callbacks, clock: Clock
    ) -> None:
        self.config, self.callbacks, self.clock = config, callbacks, clock
        self.classes = dataset.classes
        self.started = clock()
        self.epoch = 0  # epochs completed
        self.iteration = 0  # mini-batches completed
        self.elapsed_before = 0.0  # seconds of the attempts before a resume
        self.initial_loss = math.nan  # on the eval subset, before any step
        self.recent: list[EpochRecord] = []  # the last RECENT_EPOCHS epoch rows
        self.reporter = Reporter(callbacks, clock, 1)
        self.cadence = CheckpointCadence(callbacks.checkpoint_seconds, clock)
        split_rng, init_rng, self.shuffle_rng, eval_rng = rng_streams(config.seed)
        self.data = data = prepare(config, dataset, split_rng, eval_rng, self.check_stop)
        sizes = (data.x_source.shape[1], *config.hidden_sizes, data.n_classes)
        self.net = Network(
            init_params(sizes, config.activation, init_rng, config.weight_init_std,
                        config.resolved_dtype, self.check_stop),
            config.activation,
            config.loss,
        )
        self.optimizer = SGD(config.learning_rate, config.momentum)
        self.best = _Best([p.copy() for p in self.net.params])
        self.chance = chance_loss(config.loss, data.n_classes)
        self.x_batch = np.empty((config.batch_size, sizes[0]), dtype=data.x_source.dtype)
        self.gradient = self._gradient_fn()
        self.evaluate_test = True

    def start(self) -> None:
        """A fresh run; initial weights that already explode the loss are refused."""
        finite = _all_finite(self.net.params)
        if finite:
            with np.errstate(over="ignore", invalid="ignore"):
                self.initial_loss = self.evaluate_train().loss
        check_initial_weights(self.config, finite, self.initial_loss, self.chance)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from `checkpoint`, refusing one of another configuration."""
        net = self.net
        saved = checkpoint.params
        if [p.shape for p in saved] != [p.shape for p in net.params] or (
            saved[0].dtype != net.dtype
        ):
            raise InvalidConfig("resume", "the checkpoint does not match this configuration")
        for p, value, best, best_value in zip(
            net.params, saved, self.best.params, checkpoint.best_params, strict=True
        ):
            p[...], best[...] = value, best_value
        self.optimizer.load_state(checkpoint.velocity)
        self.shuffle_rng.bit_generator.state = checkpoint.rng_state
        self.epoch, self.iteration = checkpoint.epoch, checkpoint.iteration
        self.best.epoch, self.best.val_loss = checkpoint.best_epoch, checkpoint.best_val_loss
        self.best.stale_epochs = checkpoint.epochs_without_improvement
        self.recent = list(checkpoint.recent_epochs)
        self.initial_loss = checkpoint.initial_loss
        self.elapsed_before = checkpoint.elapsed_seconds
        self.reporter.first = checkpoint.iteration + 1

    def finished(self) -> bool:
        """All epochs run, or early stopping's patience ran out (also right after a resume
        from the checkpoint of the epoch that stopped the run)."""
        patience = self.config.early_stopping_patience
        if patience is not None and self.best.stale_epochs >= patience:
            return True
        return self.epoch >= self.config.epochs

    def check_stop(self) -> None:
        """Between the pieces of a long phase: if asked to stop, report what was done, stop."""
        should_stop = self.callbacks.should_stop
        if should_stop is not None and should_stop():
            self.reporter.flush()
            raise Stopped(self.iteration)

    def train_epoch(self) -> None:
        """One pass over the training set in shuffled mini-batches: the hot loop."""
        data, reporter, x_batch = self.data, self.reporter, self.x_batch
        x_source, rows, t_train = data.x_source, data.rows, data.t_train
        gradient, update = self.gradient, self.optimizer.update
        params, grads = [self.net.flat_params], [self.net.flat_grads]
        should_stop = self.callbacks.should_stop
        explode_above = explode_threshold(self.initial_loss, self.chance)
        n_train, batch = len(rows), self.config.batch_size
        order = self.shuffle_rng.permutation(n_train)
        for start in range(0, n_train, batch):
            if should_stop is not None and should_stop():
                reporter.flush()
                raise Stopped(self.iteration)
            idx = order[start : start + batch]
            # mode="clip": the indices are valid by construction, and the default "raise"
            # makes np.take buffer its output (a second copy of the batch).
            xb = np.take(x_source, rows[idx], axis=0, out=x_batch[: len(idx)], mode="clip")
            loss = gradient(xb, t_train[idx])  # the gradient lands in net.flat_grads
            self.iteration += 1
            reporter.add(loss)
            if not math.isfinite(loss) or loss > explode_above:
                reporter.flush()
                raise rate_too_large(self.iteration, loss, self.config.learning_rate)
            update(params, grads)
        reporter.flush()

    def end_epoch(self) -> None:
        """Evaluate the epoch's weights, keep the best, tell the caller, checkpoint if due."""
        if not _all_finite(self.net.params):
            raise rate_too_large(self.iteration, math.nan, self.config.learning_rate)
        record = self.epoch_record(self.epoch + 1)
        self.epoch = record.epoch
        self.best.observe(record, self.net.params)
        self.recent = [*self.recent, record][-RECENT_EPOCHS:]
        callbacks = self.callbacks
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(record)
        if callbacks.on_checkpoint is not None and self.cadence.due(self.finished()):
            callbacks.on_checkpoint(self.checkpoint())

    def evaluate_train(self) -> Evaluation:
        data = self.data
        return evaluate(self.net, data.x_source, data.t_eval, data.eval_rows, self.check_stop)

    def evaluate_val(self) -> Evaluation | None:
        data = self.data
        if len(data.t_val) == 0:
            return None
        return evaluate(self.net, data.x_val, data.t_val, check_stop=self.check_stop)

    def epoch_record(self, epoch: int) -> EpochRecord:
        train, val = self.evaluate_train(), self.evaluate_val()
        return EpochRecord(
            epoch=epoch,
            iteration=self.iteration,
            train_loss=train.loss,
            train_accuracy=train.accuracy,
            val_loss=val.loss if val else None,
            val_accuracy=val.accuracy if val else None,
        )

    def elapsed(self) -> float:
        return self.elapsed_before + self.clock() - self.started

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            epoch=self.epoch,
            iteration=self.iteration,
            params=[p.copy() for p in self.net.params],
            velocity=self.optimizer.state(),
            rng_state=dict(self.shuffle_rng.bit_generator.state),
            best_params=[p.copy() for p in self.best.params],
            best_epoch=self.best.epoch,
            best_val_loss=self.best.val_loss,
            epochs_without_improvement=self.best.stale_epochs,
            recent_epochs=list(self.recent),
            initial_loss=self.initial_loss,
            elapsed_seconds=self.elapsed(),
        )

    def result(self) -> TrainResult:
        """Evaluate the chosen model: on the training set, the validation set, and here,
        exactly once, the test set (unless a sweep evaluates it later, for its winner)."""
        net, data, config = self.net, self.data, self.config
        for p, best in zip(net.params, self.best.params, strict=True):
            p[...] = best
        train = evaluate(net, data.x_source, data.t_train, data.rows, self.check_stop)
        val = self.evaluate_val()
        test = None
        if self.evaluate_test:
            splits = data.splits
            test = report_test_set(
                net, splits.x_test, splits.t_test, data.n_classes, self.check_stop,
                self.classes,
            )
        final_loss = self.recent[-1].train_loss if self.recent else self.initial_loss
        metrics = {
            "test": test,
            "train": train.summary(),
            "validation": val.summary() if val else None,
            "best_epoch": self.best.epoch,
            "epochs_run": self.epoch,
            "iterations": self.iteration,
            "early_stopped": self.epoch < config.epochs,
            "overfitting": overfitting(train.accuracy, test),
            "duration_seconds": self.elapsed(),
        }
        warnings = learning_rate_warnings(
            self.initial_loss, final_loss, self.iteration, config.learning_rate
        ) + stopped_too_soon_warnings(self.recent, config.epochs)
        preprocess = NO_PREPROCESSING if data.standardize is None else data.standardize.to_meta()
        return TrainResult(metrics=metrics, warnings=warnings, params=self.best.params,
                           preprocess=preprocess)

    def _gradient_fn(self) -> Callable[[Array, Array], float]:
        """The batch loss; either way the gradient lands in net.flat_grads for the optimiser."""
        net, check_stop = self.net, self.check_stop

        def backprop(x: Array, t: Array) -> float:
            return net.gradient(x, t)[0]  # writes into net.flat_grads itself

        def numerical(x: Array, t: Array) -> float:
            net.set_gradient(numerical_gradient(net, x, t, check_stop=check_stop))
            return net.mean_loss(x, t)

        return backprop if self.config.gradient == "backprop" else numerical


def overfitting(train_accuracy: float, test: dict[str, Any] | None) -> dict[str, Any] | None:
    """The metrics' `overfitting`: train accuracy - test accuracy, flagged above
    OVERFITTING_GAP; None while the test set has not been evaluated."""
    if test is None:
        return None
    gap = train_accuracy - test["accuracy"]
    return {"gap": gap, "threshold": OVERFITTING_GAP, "flagged": gap > OVERFITTING_GAP}


def evaluate_test_set(
    config: TrainConfig, dataset: Dataset, net: Network,
    preprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `test` block of a model that `train(config, dataset, evaluate_test=False)` chose:
    the same seeded split, so the same test rows, read here for the first time, with the
    model's own `preprocess` (TrainResult.preprocess, the model file's meta)."""
    config.validate()
    split_rng = rng_streams(config.seed)[0]
    splits = replace(make_splits(dataset, config.validation_fraction, split_rng),
                     standardize=from_meta(preprocess))
    with np.errstate(over="ignore"):
        return report_test_set(net, splits.x_test, splits.t_test, splits.n_classes,
                               classes=dataset.classes)


def _all_finite(arrays: list[Array]) -> bool:
    """Array by array: the temporary is one layer's mask, not the whole network's."""
    return all(np.isfinite(a).all() for a in arrays)
