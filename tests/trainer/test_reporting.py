"""Tests of what a run reports to its caller: loss chunks, and the checkpoint cadence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.trainer.recording import BLOBS, Recorder, run
from trainer import Checkpoint, EpochRecord, TrainConfig, train
from trainer.reporting import CheckpointCadence


def test_progress_is_reported_in_contiguous_chunks_numbered_from_one() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=3)  # 36 iterations per epoch
    _, recorder = run(config, report_every=5)
    n = 3 * math.ceil(720 / 20)
    assert recorder.iterations() == list(range(1, n + 1))
    assert len(recorder.chunks) < n  # chunks, never one call per iteration
    assert all(1 <= len(losses) <= 5 for _, losses in recorder.chunks)
    assert all(losses.dtype == np.float32 for _, losses in recorder.chunks)
    _, one_by_one = run(config, report_every=1)
    assert recorder.losses().tobytes() == one_by_one.losses().tobytes()  # chunking loses nothing
    # every epoch's iterations are delivered before its epoch row, and no later ones
    assert recorder.delivered_at_epoch == [r.iteration for r in recorder.records] == [36, 72, 108]
    assert recorder.events[-2:] == ["epoch", "checkpoint"]


def test_default_chunks_are_large_and_cut_at_epoch_ends() -> None:
    _, recorder = run(TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=2))
    assert [(first, len(losses)) for first, losses in recorder.chunks] == [(1, 36), (37, 36)]


def test_progress_is_also_flushed_by_time() -> None:
    ticks = iter(range(10**6))
    recorder = Recorder()
    train(TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=1), BLOBS,
          recorder.callbacks(report_every=1000, report_seconds=3.0),
          clock=lambda: float(next(ticks)))
    assert recorder.iterations() == list(range(1, 37))
    assert len(recorder.chunks) > 1  # far fewer than 1000 iterations, yet several chunks
    assert all(len(losses) <= 3 for _, losses in recorder.chunks)


# --- the checkpoint cadence ------------------------------------------------------------------


class EpochClock:
    """A clock that the test moves: `seconds_per_epoch` pass at each epoch end."""

    def __init__(self, seconds_per_epoch: float) -> None:
        self.now = 0.0
        self.step = seconds_per_epoch

    def __call__(self) -> float:
        return self.now

    def on_epoch(self, record: EpochRecord) -> None:
        self.now += self.step


def checkpointed_epochs(config: TrainConfig, seconds: float, per_epoch: float) -> list[int]:
    clock = EpochClock(per_epoch)
    epochs: list[int] = []

    def on_checkpoint(checkpoint: Checkpoint) -> None:
        epochs.append(checkpoint.epoch)

    recorder = Recorder()
    callbacks = recorder.callbacks(checkpoint_seconds=seconds)
    callbacks.on_epoch, callbacks.on_checkpoint = clock.on_epoch, on_checkpoint
    train(config, BLOBS, callbacks, clock=clock)
    return epochs


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),  # 0: every epoch
        (10.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        (25.0, [3, 6, 9, 10]),  # at most one per 25 s, and always at the last epoch
        (35.0, [4, 8, 10]),
        (1e9, [10]),
    ],
)
def test_checkpoints_come_at_most_once_per_checkpoint_seconds_and_at_the_end(
    seconds: float, expected: list[int]
) -> None:
    config = TrainConfig(hidden_sizes=(4,), batch_size=100, epochs=10)
    assert checkpointed_epochs(config, seconds, per_epoch=10.0) == expected


def test_the_epoch_that_early_stopping_ends_on_is_always_checkpointed() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=30, learning_rate=2.0,
                         early_stopping_patience=2)
    result, _ = run(config)
    ran = result.metrics["epochs_run"]
    assert ran < 30
    assert checkpointed_epochs(config, 1e9, per_epoch=10.0) == [ran]


def test_cadence_counts_from_the_start_and_from_each_checkpoint() -> None:
    now = [100.0]
    cadence = CheckpointCadence(30.0, lambda: now[0])
    decisions = []
    for t in (110.0, 130.0, 150.0, 159.0, 161.0, 162.0):
        now[0] = t
        decisions.append(cadence.due(last_epoch=t == 162.0))
    assert decisions == [False, True, False, False, True, True]
