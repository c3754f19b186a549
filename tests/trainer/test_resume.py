"""Tests of reproducibility, resuming from checkpoints, and the checkpoints' size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.trainer.recording import (
    BLOBS,
    SPIRAL,
    Recorder,
    assert_same_result,
    frozen_clock,
    run,
)
from trainer import Checkpoint, InvalidConfig, Stopped, TrainConfig, load_dataset, train

DIGITS = load_dataset("digits")  # scikit-learn's, always installed with the trainer's tests


def test_same_config_seed_and_data_give_bitwise_identical_runs() -> None:
    config = TrainConfig(hidden_sizes=(16, 8), activation="relu", batch_size=32, epochs=3,
                         learning_rate=0.3, momentum=0.5, seed=11)
    a, rec_a = run(config, SPIRAL)
    b, rec_b = run(config, SPIRAL)
    assert_same_result(a, b)
    assert rec_a.checkpoints == rec_b.checkpoints
    assert rec_a.records == rec_b.records
    assert rec_a.losses().tobytes() == rec_b.losses().tobytes()


def test_a_different_seed_gives_a_different_run() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=2, seed=1)
    a, rec_a = run(config, SPIRAL)
    b, rec_b = run(replace(config, seed=2), SPIRAL)
    assert not np.array_equal(rec_a.losses(), rec_b.losses())
    assert not np.array_equal(a.params[0], b.params[0])
    assert a.metrics["test"] != b.metrics["test"]


RESUME_CASES = {
    "float32": (TrainConfig(hidden_sizes=(16,), activation="relu", batch_size=32, epochs=4,
                            learning_rate=0.3), SPIRAL),
    "momentum": (TrainConfig(hidden_sizes=(12, 6), batch_size=25, epochs=4,
                             learning_rate=0.2, momentum=0.9, loss="sum_squares"), SPIRAL),
    "early-stopping": (TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=20,
                                   learning_rate=1.0, early_stopping_patience=1), BLOBS),
    # validation worsens, improves, then stalls twice: a checkpoint holds a stale count of 1
    "early-stopping-patience-2": (TrainConfig(hidden_sizes=(16,), activation="relu",
                                              batch_size=20, epochs=20, learning_rate=1.0,
                                              early_stopping_patience=2), BLOBS),
    "no-validation": (TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3,
                                  validation_fraction=0.0), BLOBS),
    "float64": (TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3, dtype="float64",
                            momentum=0.5), BLOBS),
    # ends with the "still falling" warning, which reads the rows a checkpoint keeps
    "still-falling": (TrainConfig(hidden_sizes=(50,), batch_size=100, epochs=10), DIGITS),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resuming_from_any_epochs_checkpoint_is_bitwise_identical(case: str) -> None:
    config, dataset = RESUME_CASES[case]
    full, recorder = run(config, dataset)
    epochs_run = full.metrics["epochs_run"]
    assert len(recorder.checkpoints) == epochs_run >= 3
    patience = config.early_stopping_patience
    if patience is not None:
        assert epochs_run < config.epochs
        stale = [Checkpoint.from_bytes(b).epochs_without_improvement
                 for b in recorder.checkpoints[:-1]]
        assert max(stale) == patience - 1
    last = epochs_run
    if case == "still-falling":
        assert any("still falling" in w for w in full.warnings)
    for k in range(1, last + 1):
        checkpoint = Checkpoint.from_bytes(recorder.checkpoints[k - 1])
        assert checkpoint.epoch == k
        resumed, rec = run(config, dataset, resume=checkpoint)
        assert_same_result(full, resumed)
        assert rec.checkpoints == recorder.checkpoints[k:]
        assert rec.records == recorder.records[k:]
        assert rec.iterations() == list(range(checkpoint.iteration + 1,
                                               full.metrics["iterations"] + 1))
        assert rec.losses().tobytes() == recorder.losses()[checkpoint.iteration :].tobytes()


def test_resuming_from_the_checkpoint_that_triggered_early_stopping_trains_no_more() -> None:
    config, dataset = RESUME_CASES["early-stopping"]
    full, recorder = run(config, dataset)
    last = Checkpoint.from_bytes(recorder.checkpoints[-1])
    resumed, rec = run(config, dataset, resume=last)
    assert rec.chunks == [] and rec.records == []
    assert resumed.metrics["epochs_run"] == full.metrics["epochs_run"]
    assert_same_result(full, resumed)


def test_a_stopped_run_resumed_from_its_last_checkpoint_matches_the_uninterrupted_run() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3, momentum=0.9)
    full, _ = run(config)
    stopped = Recorder()
    with pytest.raises(Stopped) as info:
        train(config, BLOBS, stopped.callbacks(
            should_stop=lambda: len(stopped.iterations()) >= 25, report_every=1,
        ), clock=frozen_clock)
    assert info.value.iteration == 25
    assert len(stopped.checkpoints) == 1  # 18 iterations per epoch: stopped in epoch 2
    resumed, _ = run(config, resume=Checkpoint.from_bytes(stopped.checkpoints[-1]))
    assert_same_result(full, resumed)


def test_a_checkpoint_of_another_configuration_is_refused() -> None:
    _, recorder = run(TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=1))
    checkpoint = Checkpoint.from_bytes(recorder.checkpoints[0])
    for other in (TrainConfig(hidden_sizes=(9,), batch_size=50, epochs=2),
                  TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=2, dtype="float64")):
        with pytest.raises(InvalidConfig) as info:
            train(other, BLOBS, resume=checkpoint)
        assert info.value.field == "resume"


# --- the checkpoint's size -------------------------------------------------------------------


def checkpoint_sizes(config: TrainConfig) -> list[int]:
    _, recorder = run(config)
    return [len(blob) for blob in recorder.checkpoints]


def test_a_checkpoint_does_not_grow_with_the_number_of_iterations() -> None:
    """A checkpoint once carried every loss so far: 1.46 GB per checkpoint after 720,000
    iterations. The curve is the job store's: a checkpoint's size is the network's."""
    few = TrainConfig(hidden_sizes=(8,), batch_size=720, epochs=4, validation_fraction=0.0)
    many = replace(few, batch_size=1)  # 800 times as many iterations, 3200 in all
    assert abs(checkpoint_sizes(many)[-1] - checkpoint_sizes(few)[-1]) < 200


def test_a_checkpoint_does_not_grow_with_the_number_of_epochs() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=720, epochs=60)
    sizes = checkpoint_sizes(config)
    assert len(sizes) == 60
    assert max(sizes[4:]) - min(sizes[4:]) < 200  # once the kept rows stop growing
    assert sizes[-1] < 8 * 1024  # 2 x 60 float32 parameters, and the metadata
