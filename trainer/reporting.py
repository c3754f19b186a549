"""How a run talks to its caller: the callbacks, the loss reporter and the checkpoint cadence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainer.checkpoint import Checkpoint, EpochRecord

Array = np.ndarray
Clock = Callable[[], float]


@dataclass
class Callbacks:
    """How the caller hears about a run and steers it; every hook is optional.

    on_iterations(first_iteration, losses): float32 mini-batch losses of iterations
        first_iteration, first_iteration + 1, ... (numbered from 1), delivered every
        `report_every` iterations or `report_seconds`, whichever comes first, and at
        each epoch end; never one call per iteration.
    on_epoch(record): at each epoch end, after the iterations of that epoch.
    on_checkpoint(checkpoint): at an epoch end, after on_epoch: at most once per
        `checkpoint_seconds` of the run's clock (0: every epoch), and always at the end of
        the run's last epoch (the configured last, or the one early stopping ends on).
    should_stop(): asked before every mini-batch and between the pieces of every other
        long phase (initialisation, evaluation passes, a numerical gradient); True stops
        the run with `Stopped`.
    """

    on_iterations: Callable[[int, Array], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    should_stop: Callable[[], bool] | None = None
    report_every: int = 500
    report_seconds: float = 0.25
    checkpoint_seconds: float = 0.0


class Reporter:
    """Collects per-iteration losses and hands them to the caller in chunks."""

    def __init__(self, callbacks: Callbacks, clock: Clock, next_iteration: int) -> None:
        self.on_iterations = callbacks.on_iterations
        self.every = max(1, callbacks.report_every)
        self.seconds = callbacks.report_seconds
        self.clock = clock
        self.pending: list[float] = []
        self.first = next_iteration  # iteration number of pending[0]
        self.last_flush = clock()

    def add(self, loss: float) -> None:
        self.pending.append(loss)
        if len(self.pending) >= self.every or self.clock() - self.last_flush >= self.seconds:
            self.flush()

    def flush(self) -> None:
        self.last_flush = self.clock()
        if not self.pending:
            return
        if self.on_iterations is not None:
            self.on_iterations(self.first, np.asarray(self.pending, dtype=np.float32))
        self.first += len(self.pending)
        self.pending = []


class CheckpointCadence:
    """Decides at each epoch end whether a checkpoint is due: one per `seconds` at most."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self.clock = clock
        self.last = clock()  # the run's start counts as the last checkpoint

    def due(self, last_epoch: bool) -> bool:
        now = self.clock()
        if last_epoch or self.seconds <= 0 or now - self.last >= self.seconds:
            self.last = now
            return True
        return False
