"""Tests of a run's advice: which setting a divergence blames, and the end-of-run warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.trainer.recording import BLOBS, Recorder, frozen_clock, run
from trainer import Dataset, Diverged, TrainConfig, train
from trainer.advice import learning_rate_warnings

# --- divergence ------------------------------------------------------------------------------


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


def test_a_non_finite_loss_diverges_at_once() -> None:
    rng = np.random.default_rng(0)
    x = np.full((60, 3), 3e38, dtype=np.float32) * np.sign(rng.normal(size=(60, 3))).astype(
        np.float32)
    dataset = Dataset("huge", x, np.arange(60, dtype=np.int64) % 2, 2)
    config = TrainConfig(hidden_sizes=(4,), activation="relu", batch_size=10, learning_rate=0.1)
    with np.errstate(all="ignore"), pytest.raises(Diverged) as info:
        train(config, dataset, clock=frozen_clock)
    assert info.value.iteration == 1
    assert not math.isfinite(info.value.loss)
    assert "try 0.01" in str(info.value)


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
