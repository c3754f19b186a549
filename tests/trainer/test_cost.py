"""Tests of the cost estimate: exact iterations, monotonic, numerical far costlier."""

from __future__ import annotations

import math

import pytest

from trainer import (
    Callbacks,
    CostEstimate,
    TrainConfig,
    dataset_info,
    estimate_cost,
    load_dataset,
    train,
    training_size,
)
from trainer.cost import (
    ELEMENTWISE_PER_SECOND,
    gradient_check_seconds,
    numerical_gradient_seconds,
)

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
                                  "seconds": estimate.seconds,
                                  "checkpoint_bytes": estimate.checkpoint_bytes,
                                  "memory_bytes": estimate.memory_bytes}


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


@pytest.mark.parametrize(
    "config",
    [
        # 67,331 parameters: their bytes dwarf the metadata's allowance, so a wrong item
        # size or a missing velocity copy would break the bound.
        TrainConfig(hidden_sizes=(256, 256), batch_size=50, epochs=3),
        TrainConfig(hidden_sizes=(256, 256), batch_size=50, epochs=3, momentum=0.9),
        TrainConfig(hidden_sizes=(256, 256), batch_size=50, epochs=2, dtype="float64"),
        TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=2, gradient="numerical"),
        TrainConfig(hidden_sizes=(2,) * 8, batch_size=648, epochs=300, momentum=0.9),
        TrainConfig(hidden_sizes=(4,), batch_size=1, epochs=3),  # 1,944 iterations
    ],
    ids=["float32", "momentum", "float64", "numerical", "many-epochs-8-layers", "batch-1"],
)
def test_checkpoint_bytes_bounds_the_real_checkpoints_closely(config: TrainConfig) -> None:
    dataset = load_dataset("spiral")
    sizes: list[int] = []
    train(config, dataset, Callbacks(on_checkpoint=lambda c: sizes.append(len(c.to_bytes()))))
    info = dataset_info("spiral")
    estimate = estimate_cost(config, info.n_train, info.n_features, info.n_classes)
    assert len(sizes) == config.epochs
    assert max(sizes) <= estimate.checkpoint_bytes  # an upper bound...
    arrays = 4 * (len(config.hidden_sizes) + 1) + 1
    slack = 4 * 1024 + 512 * arrays + 256 * 4  # ...off by the metadata's allowance at most
    assert estimate.checkpoint_bytes - max(sizes) < slack


def test_checkpoint_bytes_do_not_depend_on_the_length_of_the_run() -> None:
    """The curve lives in the job store, not in the checkpoint (it once held 4 bytes per
    iteration: 1.46 GB for a 720,000-iteration job)."""
    sizes = {
        estimate_cost(TrainConfig(epochs=epochs, batch_size=batch), **MNIST).checkpoint_bytes
        for epochs in (1, 10, 1000) for batch in (1, 100)
    }
    assert len(sizes) == 1


def test_checkpoint_bytes_of_the_largest_network_is_over_a_gigabyte() -> None:
    widest = TrainConfig(hidden_sizes=(4096,) * 8, epochs=1, momentum=0.9)
    estimate = estimate_cost(widest, **MNIST)
    # 3 copies (weights, best weights, velocity) of 120M float32 parameters
    assert estimate.checkpoint_bytes > 1.4e9
    assert estimate_cost(TrainConfig(), **MNIST).checkpoint_bytes < 1e6  # 784-50-10: ~0.3 MB


def numerical_part(hidden: tuple[int, ...]) -> tuple[float, float]:
    """(flops, seconds) that gradient numerical adds to a float64 job on MNIST's shapes."""
    backprop = estimate_cost(TrainConfig(hidden_sizes=hidden, dtype="float64"), **MNIST)
    numerical = estimate_cost(TrainConfig(hidden_sizes=hidden, gradient="numerical"), **MNIST)
    return numerical.flops - backprop.flops, numerical.seconds - backprop.seconds


@pytest.mark.parametrize("hidden", [(50,), (100, 50), (30, 30, 30)])
def test_a_numerical_job_costs_its_numerical_gradients(hidden: tuple[int, ...]) -> None:
    _, seconds = numerical_part(hidden)
    samples = training_size(MNIST["n_train_total"], TrainConfig()) * TrainConfig().epochs
    sizes = (MNIST["n_features"], *hidden, MNIST["n_classes"])

    assert seconds == pytest.approx(numerical_gradient_seconds(sizes, samples))


def test_a_deep_layers_batched_products_run_at_the_matmul_rate() -> None:
    """Layers before the last hidden one push their perturbations through the rest of the
    network as matrix products: faster per flop than the elementwise work."""
    flops, seconds = numerical_part((50,))  # no such layer: all elementwise
    assert seconds == pytest.approx(flops / ELEMENTWISE_PER_SECOND)
    flops, seconds = numerical_part((100, 50))
    assert seconds < 0.9 * flops / ELEMENTWISE_PER_SECOND


def test_a_gradient_check_costs_about_its_batch_size_times_one_sample() -> None:
    sizes = (784, 100, 50, 10)
    one, ten = gradient_check_seconds(sizes, 1), gradient_check_seconds(sizes, 10)

    assert 9.5 * one < ten < 10 * one
    assert gradient_check_seconds((784, 200, 50, 10), 10) > ten
    assert gradient_check_seconds((784, 50, 10), 10) < ten
    assert ten > numerical_gradient_seconds(sizes, 10)  # plus the forward and backward passes
