"""Tests of a run's advice: which setting a divergence blames, and the end-of-run warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.trainer.recording import BLOBS, Recorder, frozen_clock, run
from trainer import Dataset, Diverged, EpochRecord, TrainConfig, load_dataset, train
from trainer.advice import STILL_FALLING, learning_rate_warnings, stopped_too_soon_warnings

DIGITS = load_dataset("digits")  # scikit-learn's, always installed with the trainer's tests

# --- divergence: the learning rate, the initial weights, or the data --------------------------


def test_a_huge_learning_rate_diverges_naming_the_iteration_and_a_smaller_rate() -> None:
    config = TrainConfig(activation="relu", learning_rate=10.0, hidden_sizes=(32,), batch_size=50)
    recorder = Recorder()
    with pytest.raises(Diverged) as info:
        train(config, BLOBS, recorder.callbacks(), clock=frozen_clock)
    error = info.value
    assert error.code == "diverged"
    assert error.field == "learning_rate"
    assert error.iteration >= 1
    message = str(error)
    assert f"at iteration {error.iteration}" in message
    assert "learning_rate 10.0 is too large" in message and "try 1" in message
    # the iterations up to the diverged one were reported; the test set never was touched
    assert recorder.iterations() == list(range(1, error.iteration + 1))
    assert recorder.losses()[-1] == np.float32(error.loss)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("std", [1e308, 1e30, 1e4])
def test_a_huge_weight_init_std_is_blamed_not_the_learning_rate(std: float, dtype: str) -> None:
    """1e308 overflows to infinite weights; 1e30 and 1e4 give finite weights whose loss
    has exploded before any step. No learning rate could have helped."""
    config = TrainConfig(hidden_sizes=(16,), activation="relu", batch_size=50, dtype=dtype,
                         weight_init_std=std)
    recorder = Recorder()
    with pytest.raises(Diverged) as info:
        train(config, BLOBS, recorder.callbacks(), clock=frozen_clock)
    error = info.value
    assert error.field == "weight_init_std" and error.iteration == 0
    message = str(error)
    assert "before the first step" in message
    assert f"weight_init_std {std!r} is too large" in message
    assert "null" in message and "0.01" in message
    assert "learning_rate" not in message
    assert recorder.events == []  # not one step was taken


def test_features_too_large_for_the_default_initialisation_blame_the_data() -> None:
    rng = np.random.default_rng(0)
    x = np.full((60, 3), 3e38, dtype=np.float32) * np.sign(rng.normal(size=(60, 3))).astype(
        np.float32)
    dataset = Dataset("huge", x, np.arange(60, dtype=np.int64) % 2, 2)
    config = TrainConfig(hidden_sizes=(4,), activation="relu", batch_size=10, learning_rate=0.1)
    with np.errstate(all="ignore"), pytest.raises(Diverged) as info:
        train(config, dataset, clock=frozen_clock)
    assert info.value.field == "dataset" and info.value.iteration == 0
    assert not math.isfinite(info.value.loss)
    assert "standardize" in str(info.value) and "learning_rate" not in str(info.value)


def test_a_usual_weight_init_std_trains() -> None:
    result, _ = run(TrainConfig(hidden_sizes=(16,), batch_size=50, epochs=2,
                                weight_init_std=0.01, learning_rate=0.5))
    assert result.metrics["iterations"] == 2 * math.ceil(720 / 50)


# --- the learning rate warnings -----------------------------------------------------------


def test_a_tiny_learning_rate_warns_that_it_is_too_small() -> None:
    result, _ = run(TrainConfig(learning_rate=1e-5, hidden_sizes=(16,), batch_size=50, epochs=3))
    assert len(result.warnings) == 1
    assert "too small" in result.warnings[0]
    assert "1e-05" in result.warnings[0]


def test_a_good_learning_rate_does_not_warn() -> None:
    result, _ = run(TrainConfig(learning_rate=0.5, hidden_sizes=(16,), batch_size=50, epochs=30))
    assert result.warnings == []


@pytest.mark.parametrize(
    ("initial", "final", "expected"),
    [
        (1.0, 0.5, None),
        (1.0, 0.995, "too small"),
        (1.0, 0.96, "too small"),  # a few percent over a whole run is barely moving
        (1.0, 0.94, None),
        (1.0, 1.0, "too small"),
        (1.0, 1.5, "too large"),
        (math.nan, 0.5, None),
        (1.0, math.inf, None),
        (0.0, 0.0, None),
    ],
)
def test_learning_rate_warnings(initial: float, final: float, expected: str | None) -> None:
    warnings = learning_rate_warnings(initial, final, 100, 0.1)
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expected in warnings[0] and "100 iterations" in warnings[0]


# --- stopped too soon -------------------------------------------------------------------------

BOOK_ON_DIGITS = TrainConfig(hidden_sizes=(50,), activation="sigmoid", learning_rate=0.1,
                             batch_size=100, epochs=10)


def test_a_run_still_falling_fast_at_its_last_epoch_says_more_epochs_would_help() -> None:
    """The book's settings on digits: 130 iterations, 69% test accuracy, the validation loss
    still falling by about 1.5% per epoch when the run ends."""
    result, recorder = run(BOOK_ON_DIGITS, DIGITS)
    assert result.metrics["test"]["accuracy"] < 0.8
    [warning] = [w for w in result.warnings if "still falling" in w]
    val = [r.val_loss for r in recorder.records]
    drop = (val[-2] - val[-1]) / val[-2]
    assert drop > STILL_FALLING
    assert "validation loss" in warning and f"{100 * drop:.1f}% in epoch 10" in warning
    assert "more epochs would likely help" in warning


def test_a_run_without_validation_watches_the_training_loss() -> None:
    result, _ = run(TrainConfig(hidden_sizes=(50,), batch_size=100, epochs=10,
                                validation_fraction=0.0), DIGITS)
    assert any("training loss was still falling" in w for w in result.warnings)


def test_a_converged_run_does_not_say_more_epochs_would_help() -> None:
    config = TrainConfig(hidden_sizes=(32,), activation="relu", learning_rate=0.3,
                         batch_size=32, epochs=40)
    result, recorder = run(config, DIGITS)
    assert result.metrics["test"]["accuracy"] > 0.95
    assert not any("still falling" in w for w in result.warnings)


def test_an_early_stopped_run_does_not_say_more_epochs_would_help() -> None:
    config = TrainConfig(hidden_sizes=(32,), activation="relu", learning_rate=0.3,
                         batch_size=32, epochs=100, early_stopping_patience=2)
    result, _ = run(config, DIGITS)
    assert result.metrics["early_stopped"] is True
    assert not any("still falling" in w for w in result.warnings)


def rows(*val_losses: float) -> list[EpochRecord]:
    return [EpochRecord(k, 10 * k, 1.0, 0.5, v, 0.5) for k, v in enumerate(val_losses, 1)]


@pytest.mark.parametrize(
    ("val_losses", "epochs", "warns"),
    [
        ((1.0, 0.9, 0.8), 3, True),
        ((2.0, 1.0, 0.9, 0.8), 4, True),
        ((1.0, 0.9, 0.8), 5, False),  # the run did not go all its epochs
        ((1.0, 0.9, 0.899), 3, False),  # the last epoch barely moved
        ((1.0, 0.999, 0.9), 3, False),  # one fast epoch after a flat one
        ((1.0, 1.035, 0.99, 0.96), 4, False),  # up, then down twice: noise around a level
        ((1.0, 0.8, 0.85), 3, False),  # rose at the end
        ((0.9, 0.8), 2, False),  # too few epochs to tell
        ((1.0, 0.9, math.nan), 3, False),
    ],
)
def test_stopped_too_soon_rule(val_losses: tuple[float, ...], epochs: int, warns: bool) -> None:
    assert bool(stopped_too_soon_warnings(rows(*val_losses), epochs)) is warns
