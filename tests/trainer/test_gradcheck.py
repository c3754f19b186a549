"""Tests of the gradient check: it agrees for a correct backprop, names and shapes every
array, catches a broken one, times the two gradients apart, and checks a job's start."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer import InvalidConfig, TrainConfig, load_dataset, train
from trainer.datasets import Dataset
from trainer.gradcheck import (
    AGREE,
    ArrayCheck,
    GradientCheck,
    check_gradients,
    check_initial_gradients,
    initial_batch,
    parameter_names,
)
from trainer.network import Network
from trainer.numerical import relative_errors

TINY = TrainConfig(hidden_sizes=(5, 4), batch_size=8)


@pytest.fixture(scope="module")
def blobs() -> Dataset:
    return load_dataset("blobs")


@pytest.mark.parametrize("loss", ["cross_entropy", "sum_squares"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_a_correct_backprop_agrees(blobs: Dataset, activation: str, loss: str) -> None:
    config = TrainConfig(hidden_sizes=(5, 4), activation=activation, loss=loss, batch_size=8)

    result = check_initial_gradients(config, blobs)

    assert result.agree
    assert result.max_relative_error < 1e-7
    assert result.max_relative_error == max(p.max_relative_error for p in result.parameters)
    assert all(0 <= p.mean_relative_error <= p.max_relative_error for p in result.parameters)


def test_every_array_is_named_in_layer_order_with_its_shape(blobs: Dataset) -> None:
    result = check_initial_gradients(TINY, blobs)

    n_features, n_classes = blobs.x.shape[1], blobs.n_classes
    assert [(p.name, p.shape) for p in result.parameters] == [
        ("W1", (n_features, 5)), ("b1", (5,)), ("W2", (5, 4)), ("b2", (4,)),
        ("W3", (4, n_classes)), ("b3", (n_classes,)),
    ]
    assert parameter_names(1) == ["W1", "b1"]


def test_a_broken_backprop_disagrees_and_the_check_names_the_array(
    blobs: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    correct = Network.gradient

    def off_by_one_percent(
        self: Network, x: np.ndarray, t: np.ndarray
    ) -> tuple[float, list[np.ndarray]]:
        loss, grads = correct(self, x, t)
        grads[2] *= 1.01  # W2
        return loss, grads

    monkeypatch.setattr(Network, "gradient", off_by_one_percent)

    result = check_initial_gradients(TINY, blobs)

    assert not result.agree
    errors = {p.name: p.max_relative_error for p in result.parameters}
    assert errors["W2"] > 1e-3
    assert max(error for name, error in errors.items() if name != "W2") < AGREE


def test_a_backprop_that_forgets_the_activation_disagrees(
    blobs: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subtler bug than a scale: the hidden layers' gradients ignore sigmoid's slope."""
    net, x, t = initial_batch(TINY, blobs)
    monkeypatch.setattr(net, "_act_grad", lambda dz, z: dz)

    result = check_gradients(net, x, t)

    errors = {p.name: p.max_relative_error for p in result.parameters}
    assert not result.agree
    assert min(errors["W1"], errors["b1"], errors["W2"], errors["b2"]) > 1e-2
    assert max(errors["W3"], errors["b3"]) < AGREE  # the output layer does not use it


def test_backprop_and_the_numerical_gradient_are_timed_apart(blobs: Dataset) -> None:
    ticks = itertools.count()
    clock_values = [0.0, 0.001, 1.0, 3.5]  # backprop: 1 ms; numerical: 2.5 s

    result = check_initial_gradients(TINY, blobs, clock=lambda: clock_values[next(ticks)])

    assert result.backprop_seconds == pytest.approx(0.001)
    assert result.numerical_seconds == pytest.approx(2.5)
    assert result.h == 1e-4


def test_the_check_starts_where_a_job_with_the_same_seed_starts(
    blobs: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same weights (in float64) and the same first mini-batch as the training loop."""
    config = TrainConfig(hidden_sizes=(6,), batch_size=16, epochs=1, seed=7, dtype="float64")
    seen: list[tuple[list[np.ndarray], np.ndarray, np.ndarray]] = []
    correct = Network.gradient

    def recording(self: Network, x: np.ndarray, t: np.ndarray) -> tuple[float, list]:
        if not seen:
            seen.append(([p.copy() for p in self.params], x.copy(), t.copy()))
        return correct(self, x, t)

    monkeypatch.setattr(Network, "gradient", recording)
    train(config, blobs)
    job_params, job_x, job_t = seen[0]

    net, x, t = initial_batch(config, blobs)

    for mine, theirs in zip(net.params, job_params, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(x, job_x)
    np.testing.assert_array_equal(t, job_t)
    assert x.dtype == np.float64 and all(p.dtype == np.float64 for p in net.params)


def test_another_seed_checks_other_weights_on_another_batch(blobs: Dataset) -> None:
    net0, x0, _ = initial_batch(TINY, blobs)
    net1, x1, _ = initial_batch(TrainConfig(hidden_sizes=(5, 4), batch_size=8, seed=1), blobs)

    assert not np.array_equal(net0.params[0], net1.params[0])
    assert not np.array_equal(x0, x1)


def test_a_batch_larger_than_the_training_set_is_refused(blobs: Dataset) -> None:
    with pytest.raises(InvalidConfig) as info:
        check_initial_gradients(TrainConfig(batch_size=len(blobs.t)), blobs)

    assert info.value.field == "batch_size"


@pytest.mark.parametrize("std", [1000.0, 1e300])  # a huge loss; inf * 0 = nan
def test_weights_that_explode_the_loss_are_refused_naming_the_setting(
    blobs: Dataset, std: float
) -> None:
    config = TrainConfig(hidden_sizes=(5, 4), activation="relu", weight_init_std=std)

    with pytest.raises(InvalidConfig) as info:
        check_initial_gradients(config, blobs)

    assert info.value.field == "weight_init_std"
    assert "too large for a gradient check" in str(info.value)


def test_huge_features_with_the_default_initialisation_blame_the_dataset() -> None:
    rng = np.random.default_rng(0)
    huge = Dataset("huge", rng.normal(size=(200, 3)).astype(np.float32) * 1e6,
                   rng.integers(0, 2, size=200), 2)

    with pytest.raises(InvalidConfig) as info:
        check_initial_gradients(
            TrainConfig(hidden_sizes=(4,), activation="relu", batch_size=10), huge
        )

    assert info.value.field == "dataset" and "'huge'" in str(info.value)


def test_relative_errors_are_relative_to_the_arrays_scale() -> None:
    """A near-zero element's rounding does not count as a large error (see relative_errors),
    while an error of the array's own size does."""
    analytic = np.array([1.0, 1e-12])
    numeric = np.array([1.0, 3e-12])

    assert relative_errors(analytic, numeric).max() < 1e-11
    assert relative_errors(analytic, np.array([0.5, 1e-12])).max() == pytest.approx(0.5 / 1.5)
    assert relative_errors(np.zeros(3), np.zeros(3)).max() == 0.0


@pytest.mark.parametrize(("error", "agree"), [(AGREE, True), (1.01 * AGREE, False)])
def test_agree_means_no_error_above_one_in_a_million(error: float, agree: bool) -> None:
    result = GradientCheck(
        (ArrayCheck("W1", (2, 2), error / 10, 0.0), ArrayCheck("b1", (2,), error, 0.0)),
        1e-4, 0.0, 0.0,
    )

    assert result.agree is agree
    assert result.to_dict()["agree"] is agree
    assert result.to_dict()["parameters"][0] == {
        "name": "W1", "shape": [2, 2], "max_relative_error": error / 10,
        "mean_relative_error": 0.0,
    }
