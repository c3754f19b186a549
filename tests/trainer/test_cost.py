"""Tests of the cost estimate: exact iterations, monotonic, numerical far costlier."""

from __future__ import annotations

import math

import pytest

from trainer import CostEstimate, TrainConfig, estimate_cost, training_size

MNIST = {"n_train_total": 60000, "n_features": 784, "n_classes": 10}


@pytest.mark.parametrize(
    ("n_train_total", "validation_fraction", "batch_size", "epochs"),
    [(60000, 0.1, 100, 10), (1000, 0.0, 64, 3), (1437, 0.2, 50, 7), (10, 0.5, 1, 2)],
)
def test_iterations_are_exact(
    n_train_total: int, validation_fraction: float, batch_size: int, epochs: int
) -> None:
    config = TrainConfig(validation_fraction=validation_fraction, batch_size=batch_size,
                         epochs=epochs)
    n_train = training_size(n_train_total, config)
    assert n_train == n_train_total - round(n_train_total * validation_fraction)
    estimate = estimate_cost(config, n_train_total, 20, 3)
    assert estimate.iterations == epochs * math.ceil(n_train / batch_size)


def test_known_iteration_count_for_mnist_defaults() -> None:
    estimate = estimate_cost(TrainConfig(), **MNIST)
    assert estimate.iterations == 10 * 540  # 54000 training samples / 100
    assert estimate.flops > 0 and estimate.seconds > 0
    assert isinstance(estimate, CostEstimate)
    assert estimate.to_dict() == {"iterations": 5400, "flops": estimate.flops,
                                  "seconds": estimate.seconds}


def test_cost_grows_with_epochs() -> None:
    estimates = [estimate_cost(TrainConfig(epochs=e), **MNIST) for e in (1, 2, 10, 100)]
    for a, b in zip(estimates, estimates[1:], strict=False):
        assert b.iterations > a.iterations
        assert b.flops > a.flops
        assert b.seconds > a.seconds


@pytest.mark.parametrize("gradient", ["backprop", "numerical"])
def test_cost_grows_with_the_hidden_size(gradient: str) -> None:
    estimates = [
        estimate_cost(TrainConfig(hidden_sizes=h, gradient=gradient), **MNIST)
        for h in ((10,), (50,), (200,), (200, 200), (1000, 1000))
    ]
    for a, b in zip(estimates, estimates[1:], strict=False):
        assert b.flops > a.flops
        assert b.seconds > a.seconds
        assert b.iterations == a.iterations


@pytest.mark.parametrize("hidden", [(50,), (100, 50)])
def test_numerical_costs_far_more_than_backprop(hidden: tuple[int, ...]) -> None:
    backprop = estimate_cost(TrainConfig(hidden_sizes=hidden), **MNIST)
    numerical = estimate_cost(TrainConfig(hidden_sizes=hidden, gradient="numerical"), **MNIST)
    assert numerical.iterations == backprop.iterations
    assert numerical.flops > 3 * backprop.flops
    assert numerical.seconds > 30 * backprop.seconds


def test_float64_is_not_cheaper_than_float32() -> None:
    f32 = estimate_cost(TrainConfig(dtype="float32"), **MNIST)
    f64 = estimate_cost(TrainConfig(dtype="float64"), **MNIST)
    assert f64.seconds > f32.seconds
    assert f64.flops == f32.flops
