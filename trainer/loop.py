"""The training loop: epochs of shuffled mini-batches, validation, checkpoints, final test."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.checkpoint import Checkpoint, EpochRecord
from trainer.config import TrainConfig
from trainer.datasets import Dataset
from trainer.errors import Diverged, InvalidConfig, Stopped
from trainer.metrics import evaluate, report_test_set
from trainer.network import Network, init_params
from trainer.numerical import numerical_gradient
from trainer.optim import SGD
from trainer.splits import Splits, make_splits, split_sizes

Array = np.ndarray

TRAIN_EVAL_SAMPLES = 10_000  # per-epoch train metrics use a fixed subset of this size at most
EXPLODE_FACTOR = 100.0  # a loss this many times above its start (or chance) has diverged
BARELY_MOVED = 0.01  # a relative loss decrease below this over a run warns of a tiny rate
OVERFITTING_GAP = 0.05  # train accuracy - test accuracy above this is flagged


@dataclass
class Callbacks:
    """How the caller hears about a run and steers it; every hook is optional.

    on_iterations(first_iteration, losses): float32 mini-batch losses of iterations
        first_iteration, first_iteration + 1, ... (numbered from 1), delivered every
        `report_every` iterations or `report_seconds`, whichever comes first, and at
        each epoch end; never one call per iteration.
    on_epoch(record): at each epoch end, after the iterations of that epoch.
    on_checkpoint(checkpoint): at each epoch end, after on_epoch.
    should_stop(): checked before every mini-batch; True stops with `Stopped`.
    """

    on_iterations: Callable[[int, Array], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    should_stop: Callable[[], bool] | None = None
    report_every: int = 500
    report_seconds: float = 0.25


@dataclass(frozen=True)
class TrainResult:
    metrics: dict[str, Any]
    warnings: list[str]
    losses: Array
    epochs: list[EpochRecord]
    params: list[Array] = field(repr=False)


def rng_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the split, the weights, the shuffling and the eval subset."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))


def training_size(n_train_total: int, config: TrainConfig) -> int:
    """Samples the optimiser sees per epoch once the validation set is taken out."""
    return split_sizes(n_train_total, config.validation_fraction)[0]


def planned_iterations(n_train_total: int, config: TrainConfig) -> int:
    """Mini-batches of a run that goes all its epochs (the last short batch counts)."""
    return config.epochs * math.ceil(training_size(n_train_total, config) / config.batch_size)


def train(
    config: TrainConfig,
    dataset: Dataset,
    callbacks: Callbacks | None = None,
    resume: Checkpoint | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Train a network on `dataset` as `config` says and evaluate the test set once, at the end.

    Raises InvalidConfig, Diverged (the loss became non-finite or exploded) or Stopped
    (should_stop said so). A run resumed from a checkpoint continues bitwise identically.
    """
    callbacks = callbacks or Callbacks()
    config.validate()
    split_rng, init_rng, shuffle_rng, eval_rng = rng_streams(config.seed)
    splits = make_splits(dataset, config.validation_fraction, split_rng)
    n_train = splits.n_train
    config.validate(n_train)
    dtype = np.dtype(config.resolved_dtype)
    if splits.x_source.dtype == dtype and splits.x_source.flags.c_contiguous:
        x_source, rows = splits.x_source, splits.train_rows  # batches gathered in place
    else:
        x_source, rows = np.ascontiguousarray(splits.x_train, dtype=dtype), np.arange(n_train)
    t_train = splits.t_train
    x_val = np.ascontiguousarray(splits.x_val, dtype=dtype)
    sizes = (x_source.shape[1], *config.hidden_sizes, splits.n_classes)
    net = Network(
        init_params(sizes, config.activation, init_rng, config.weight_init_std, dtype.name),
        config.activation,
        config.loss,
    )
    optimizer = SGD(config.learning_rate, config.momentum)
    eval_idx = np.sort(eval_rng.permutation(n_train)[: min(n_train, TRAIN_EVAL_SAMPLES)])
    x_eval, t_eval = x_source[rows[eval_idx]], t_train[eval_idx]

    if resume is None:
        state = _RunState([p.copy() for p in net.params], evaluate(net, x_eval, t_eval).loss)
    else:
        state = _RunState.resumed(resume, net, optimizer, shuffle_rng)
    reporter = _Reporter(callbacks, clock, state.iteration + 1)
    gradient = _gradient_fn(config.gradient, net)
    chance = math.log(splits.n_classes) if config.loss == "cross_entropy" else 0.5
    explode_above = EXPLODE_FACTOR * max(state.initial_loss, chance)
    started = clock()

    run = _Run(config, net, optimizer, state, reporter, callbacks, gradient, shuffle_rng,
               x_source, rows, t_train, x_eval, t_eval, x_val, splits, explode_above, clock,
               started)
    with np.errstate(over="ignore"):  # saturated sigmoid units: see functions.sigmoid_
        _run_epochs(run)
    for p, best in zip(net.params, state.best_params, strict=True):
        p[...] = best
    return _finish(config, net, splits, state, x_source, rows, x_val, clock() - started)


@dataclass
class _Run:
    """Everything the epoch loop touches, so it can live in a function of its own."""

    config: TrainConfig
    net: Network
    optimizer: SGD
    state: _RunState
    reporter: _Reporter
    callbacks: Callbacks
    gradient: Callable[[Array, Array], float]
    shuffle_rng: np.random.Generator
    x_source: Array  # training rows are gathered from here...
    rows: Array  # ...at these indices
    t_train: Array
    x_eval: Array
    t_eval: Array
    x_val: Array
    splits: Splits
    explode_above: float
    clock: Callable[[], float]
    started: float


def _run_epochs(run: _Run) -> None:
    """The epochs still to run: shuffled mini-batches, then evaluation and a checkpoint."""
    config, net, state, reporter = run.config, run.net, run.state, run.reporter
    x_source, rows, t_train, gradient = run.x_source, run.rows, run.t_train, run.gradient
    shuffle_rng = run.shuffle_rng
    n_train, batch = len(rows), config.batch_size
    should_stop = run.callbacks.should_stop
    x_batch = np.empty((batch, x_source.shape[1]), dtype=x_source.dtype)
    patience = config.early_stopping_patience
    for epoch in range(state.epoch + 1, config.epochs + 1):
        # Checked here, not after the checkpoint, so a run resumed from the checkpoint of
        # the epoch that stopped it early stops too.
        if patience is not None and state.stale_epochs >= patience:
            break
        order = shuffle_rng.permutation(n_train)
        for start in range(0, n_train, batch):
            if should_stop is not None and should_stop():
                reporter.flush()
                raise Stopped(state.iteration)
            idx = order[start : start + batch]
            # mode="clip": the indices are valid by construction, and the default "raise"
            # makes np.take buffer its output (a second copy of the batch).
            xb = np.take(x_source, rows[idx], axis=0, out=x_batch[: len(idx)], mode="clip")
            loss = gradient(xb, t_train[idx])
            state.iteration += 1
            reporter.add(loss)
            if not math.isfinite(loss) or loss > run.explode_above:
                reporter.flush()
                raise Diverged(state.iteration, loss, config.learning_rate)
            run.optimizer.update([net.flat_params], [net.flat_grads])
        reporter.flush()
        state.losses.append(reporter.take_history())
        if not all(np.isfinite(p).all() for p in net.params):
            raise Diverged(state.iteration, float("nan"), config.learning_rate)
        record = _epoch_record(
            net, epoch, state.iteration, run.x_eval, run.t_eval, run.x_val, run.splits
        )
        state.epochs.append(record)
        state.observe(record, net)
        if run.callbacks.on_epoch is not None:
            run.callbacks.on_epoch(record)
        state.epoch = epoch
        if run.callbacks.on_checkpoint is not None:
            elapsed = run.clock() - run.started
            run.callbacks.on_checkpoint(
                state.checkpoint(net, run.optimizer, shuffle_rng, elapsed)
            )


def _gradient_fn(mode: str, net: Network) -> Callable[[Array, Array], float]:
    """The batch loss; either way the gradient lands in net.flat_grads for the optimiser."""

    def backprop(x: Array, t: Array) -> float:
        return net.gradient(x, t)[0]  # writes into net.flat_grads itself

    def numerical(x: Array, t: Array) -> float:
        net.set_gradient(numerical_gradient(net, x, t))
        return net.mean_loss(x, t)

    return backprop if mode == "backprop" else numerical


def _epoch_record(
    net: Network, epoch: int, iteration: int, x_eval: Array, t_eval: Array, x_val: Array,
    splits: Splits,
) -> EpochRecord:
    train_eval = evaluate(net, x_eval, t_eval)
    has_val = x_val.shape[0] > 0
    val = evaluate(net, x_val, splits.t_val) if has_val else None
    return EpochRecord(
        epoch=epoch,
        iteration=iteration,
        train_loss=train_eval.loss,
        train_accuracy=train_eval.accuracy,
        val_loss=val.loss if val else None,
        val_accuracy=val.accuracy if val else None,
    )


class _Reporter:
    """Collects per-iteration losses and hands them to the caller in chunks."""

    def __init__(self, callbacks: Callbacks, clock: Callable[[], float], next_iter: int) -> None:
        self.on_iterations = callbacks.on_iterations
        self.every = max(1, callbacks.report_every)
        self.seconds = callbacks.report_seconds
        self.clock = clock
        self.pending: list[float] = []
        self.history: list[float] = []
        self.first = next_iter  # iteration number of pending[0]
        self.last_flush = clock()

    def add(self, loss: float) -> None:
        self.pending.append(loss)
        if len(self.pending) >= self.every or self.clock() - self.last_flush >= self.seconds:
            self.flush()

    def flush(self) -> None:
        self.last_flush = self.clock()
        if not self.pending:
            return
        chunk = np.asarray(self.pending, dtype=np.float32)
        if self.on_iterations is not None:
            self.on_iterations(self.first, chunk)
        self.first += len(self.pending)
        self.history.extend(self.pending)
        self.pending = []

    def take_history(self) -> Array:
        history = np.asarray(self.history, dtype=np.float32)
        self.history = []
        return history


class _RunState:
    """Counters, curves and the best-so-far model of a run: what a checkpoint holds."""

    def __init__(self, best_params: list[Array], initial_loss: float) -> None:
        self.initial_loss = initial_loss
        self.epoch = 0
        self.iteration = 0
        self.losses: list[Array] = []
        self.epochs: list[EpochRecord] = []
        self.best_params = best_params
        self.best_epoch = 0
        self.best_val_loss = math.inf
        self.stale_epochs = 0
        self.elapsed_before = 0.0

    @classmethod
    def resumed(
        cls, ckpt: Checkpoint, net: Network, optimizer: SGD, rng: np.random.Generator
    ) -> _RunState:
        shapes = [p.shape for p in net.params]
        if [p.shape for p in ckpt.params] != shapes or ckpt.params[0].dtype != net.dtype:
            raise InvalidConfig("resume", "the checkpoint does not match this configuration")
        for p, saved in zip(net.params, ckpt.params, strict=True):
            p[...] = saved
        optimizer.load_state(ckpt.velocity)
        rng.bit_generator.state = ckpt.rng_state
        state = cls([p.copy() for p in ckpt.best_params], ckpt.initial_loss)
        state.epoch, state.iteration = ckpt.epoch, ckpt.iteration
        state.losses = [np.asarray(ckpt.losses, dtype=np.float32)]
        state.epochs = list(ckpt.epochs)
        state.best_epoch, state.best_val_loss = ckpt.best_epoch, ckpt.best_val_loss
        state.stale_epochs = ckpt.epochs_without_improvement
        state.elapsed_before = ckpt.elapsed_seconds
        return state

    def observe(self, record: EpochRecord, net: Network) -> bool:
        """Keep the model of the best epoch: lowest validation loss (or the last, without one)."""
        score = record.val_loss if record.val_loss is not None else -record.epoch
        if score < self.best_val_loss:
            self.best_val_loss = score
            self.best_epoch = record.epoch
            self.stale_epochs = 0
            for best, p in zip(self.best_params, net.params, strict=True):
                best[...] = p
            return True
        self.stale_epochs += 1
        return False

    def all_losses(self) -> Array:
        return np.concatenate(self.losses) if self.losses else np.empty(0, dtype=np.float32)

    def checkpoint(
        self, net: Network, optimizer: SGD, rng: np.random.Generator, elapsed: float
    ) -> Checkpoint:
        losses = self.all_losses()
        self.losses = [losses]
        return Checkpoint(
            epoch=self.epoch,
            iteration=self.iteration,
            params=[p.copy() for p in net.params],
            best_params=[p.copy() for p in self.best_params],
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss,
            epochs_without_improvement=self.stale_epochs,
            velocity=optimizer.state(),
            rng_state=dict(rng.bit_generator.state),
            losses=losses,
            epochs=list(self.epochs),
            elapsed_seconds=self.elapsed_before + elapsed,
            initial_loss=self.initial_loss,
        )


def _finish(
    config: TrainConfig, net: Network, splits: Splits, state: _RunState, x_source: Array,
    rows: Array, x_val: Array, elapsed: float,
) -> TrainResult:
    """Evaluate the chosen model: the test set here, exactly once."""
    train_eval = evaluate(net, x_source, splits.t_train, rows=rows)
    val_eval = evaluate(net, x_val, splits.t_val) if x_val.shape[0] else None
    x_test = np.ascontiguousarray(splits.x_test, dtype=net.dtype)
    test = report_test_set(net, x_test, splits.t_test, splits.n_classes)
    gap = train_eval.accuracy - test["accuracy"]
    losses = state.all_losses()
    metrics = {
        "test": test,
        "train": train_eval.summary(),
        "validation": val_eval.summary() if val_eval else None,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epochs[-1].epoch if state.epochs else 0,
        "iterations": state.iteration,
        "early_stopped": bool(state.epochs) and state.epochs[-1].epoch < config.epochs,
        "overfitting": {"gap": gap, "threshold": OVERFITTING_GAP, "flagged": gap > OVERFITTING_GAP},
        "duration_seconds": state.elapsed_before + elapsed,
    }
    return TrainResult(
        metrics=metrics,
        warnings=learning_rate_warnings(
            state.initial_loss,
            state.epochs[-1].train_loss if state.epochs else state.initial_loss,
            state.iteration,
            config.learning_rate,
        ),
        losses=losses,
        epochs=list(state.epochs),
        params=[p.copy() for p in net.params],
    )


def learning_rate_warnings(
    initial: float, final: float, iterations: int, learning_rate: float
) -> list[str]:
    """Warn when the training loss barely moved over the run (rate too small) or rose.

    `initial` and `final` are the loss on the same fixed training subset before the first
    step and after the last one, so mini-batch noise cannot fake or hide a change.
    """
    if not (math.isfinite(initial) and math.isfinite(final)) or initial <= 0:
        return []
    change = (initial - final) / initial
    if change < -BARELY_MOVED:
        return [
            f"the training loss rose over {iterations} iterations ({initial:.4g} -> {final:.4g}): "
            f"learning_rate {learning_rate:g} may be too large"
        ]
    if change < BARELY_MOVED:
        return [
            f"the training loss barely moved over {iterations} iterations "
            f"({initial:.4g} -> {final:.4g}, {-100 * change:+.2f}%): "
            f"learning_rate {learning_rate:g} may be too small"
        ]
    return []
