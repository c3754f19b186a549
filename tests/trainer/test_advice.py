"""Tests of a run's advice: which setting a divergence blames, and the end-of-run warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.trainer.recording import BLOBS, Recorder, frozen_clock, run
from trainer import Dataset, Diverged, TrainConfig, train
from trainer.advice import learning_rate_warnings

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
