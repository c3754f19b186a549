"""Tests of the memory estimate: an upper bound of the measured peak, and not a loose one."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from trainer import (
    Callbacks,
    Checkpoint,
    Dataset,
    TrainConfig,
    dataset_info,
    estimate_cost,
    load_dataset,
    train,
)

MNIST = {"n_train_total": 60000, "n_features": 784, "n_classes": 10, "n_test": 10000}


def mnist_shaped(n: int = 6000, n_test: int = 1500) -> Dataset:
    """Seeded noise of MNIST's shapes: enough rows for several 4096-row evaluation pieces."""
    rng = np.random.default_rng(0)
    return Dataset("noise", rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), 10,
                   rng.random((n_test, 784), dtype=np.float32), rng.integers(0, 10, n_test))


def measured_peak(config: TrainConfig, dataset: Dataset, checkpoints: bool) -> int:
    """Peak bytes that train() allocates (NumPy reports its arrays to tracemalloc), with
    each checkpoint serialised as the worker does; the dataset existed before."""
    def serialise(checkpoint: Checkpoint) -> None:
        checkpoint.to_bytes()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        train(config, dataset, Callbacks(on_checkpoint=serialise if checkpoints else None))
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def estimated(config: TrainConfig, dataset: Dataset, checkpoints: bool) -> int:
    """The estimate from the catalogue's shapes (the noise has its own test split)."""
    if dataset.t_test is not None:
        n_train_total, n_test = len(dataset.t), len(dataset.t_test)
    else:
        info = dataset_info(dataset.name)
        n_train_total, n_test = info.n_train, info.n_test
    estimate = estimate_cost(config, n_train_total, dataset.x.shape[1], dataset.n_classes,
                             n_test=n_test, checkpoints=checkpoints)
    return estimate.memory_bytes


CASES = {
    "float32": (TrainConfig(hidden_sizes=(50,), epochs=2), "digits"),
    "float64-momentum": (TrainConfig(hidden_sizes=(50,), epochs=2, dtype="float64",
                                     momentum=0.9), "digits"),
    "two-layers": (TrainConfig(hidden_sizes=(64, 32), activation="relu", epochs=2,
                               batch_size=32), "digits"),
    "numerical": (TrainConfig(hidden_sizes=(6, 5), gradient="numerical", epochs=1,
                              batch_size=50), "spiral"),
    "numerical-digits": (TrainConfig(hidden_sizes=(16,), gradient="numerical", epochs=1),
                         "digits"),
    # a float64 job on float32 data copies the training set; 4096-row evaluation pieces
    "float64-copy": (TrainConfig(hidden_sizes=(50,), epochs=1, dtype="float64"), "noise"),
    "float32-noise": (TrainConfig(hidden_sizes=(256, 256), epochs=1, momentum=0.9), "noise"),
}


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "none"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimate_bounds_the_measured_peak(case: str, checkpoints: bool) -> None:
    config, name = CASES[case]
    dataset = mnist_shaped() if name == "noise" else load_dataset(name)
    peak = measured_peak(config, dataset, checkpoints)
    assert peak <= estimated(config, dataset, checkpoints)


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_estimate_is_close_when_the_parameters_dominate(dtype: str, checkpoints: bool) -> None:
    """1.1M parameters: weights, gradients, velocity, the best copy, a checkpoint's copies
    and bytes. The estimate is within a small factor of the real peak, not a guess."""
    config = TrainConfig(hidden_sizes=(1024, 1024), epochs=1, momentum=0.9, dtype=dtype)
    dataset = load_dataset("digits")
    peak = measured_peak(config, dataset, checkpoints)
    estimate = estimated(config, dataset, checkpoints)
    assert peak <= estimate < 2 * peak  # (measured: 1.1 to 1.4 times)


def test_the_widest_network_in_float64_with_momentum_needs_several_gigabytes() -> None:
    widest = TrainConfig(hidden_sizes=(4096,) * 8, dtype="float64", momentum=0.9)
    estimate = estimate_cost(widest, **MNIST)
    params = 784 * 4096 + 7 * 4096 * 4096 + 4096 * 10 + 8 * 4096 + 10  # 120.7 million
    # weights, gradients, velocity, best copy; a checkpoint's three copies and its bytes
    assert estimate.memory_bytes > 10 * params * 8 > 9e9
    assert estimate.memory_bytes < 12 * params * 8


def test_a_float64_job_counts_its_copy_of_the_training_set() -> None:
    f32 = estimate_cost(TrainConfig(dtype="float32"), **MNIST).memory_bytes
    f64 = estimate_cost(TrainConfig(dtype="float64"), **MNIST).memory_bytes
    assert f64 - f32 >= 54000 * 784 * 8  # 54,000 training rows of 784 float64 features


def test_checkpoints_off_need_less_memory() -> None:
    config = TrainConfig(hidden_sizes=(512, 512), momentum=0.9)
    on = estimate_cost(config, **MNIST)
    off = estimate_cost(config, **MNIST, checkpoints=False)
    assert on.memory_bytes - off.memory_bytes > 2 * on.checkpoint_bytes
