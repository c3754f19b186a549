"""A cheap, pure estimate of a configuration's cost: iterations, time, checkpoint, memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainer.advice import RECENT_EPOCHS
from trainer.config import TrainConfig
from trainer.memory import peak_bytes
from trainer.rundata import TRAIN_EVAL_SAMPLES, planned_iterations, training_size

# The API refuses absurd jobs with this before they are queued. The rates are deliberately
# round figures for one core of a small machine (calibrated against bench/trainer_bench.py):
# the time is meant to be right within a small factor, not to the second.
MATMUL_FLOPS_PER_SECOND = {"float32": 3.0e10, "float64": 1.5e10}
ELEMENTWISE_PER_SECOND = 1.5e9  # float64 element operations of the numerical gradient
STEP_OVERHEAD_SECONDS = 3e-5  # Python and NumPy call overhead of one training step
CHECKPOINT_BASE_BYTES = 4 * 1024  # zip directory, RNG state, counters (measured: < 2 KB)
CHECKPOINT_ARRAY_BYTES = 512  # per array: its zip entry and .npy header (measured: 246 bytes)
CHECKPOINT_EPOCH_BYTES = 256  # one kept epoch row in the metadata (measured: 170 bytes)


@dataclass(frozen=True)
class CostEstimate:
    iterations: int
    flops: float  # floating-point operations, matmul and elementwise together
    seconds: float
    checkpoint_bytes: int  # one Checkpoint.to_bytes(): the same size all run long
    memory_bytes: int  # upper bound of the run's peak memory beyond the dataset's arrays

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def estimate_cost(
    config: TrainConfig, n_train_total: int, n_features: int, n_classes: int,
    n_test: int | None = None, checkpoints: bool = True,
) -> CostEstimate:
    """Estimate one run of `config` on a dataset whose training part has n_train_total rows.

    `n_test` is the test set's size (a DatasetInfo's n_test); None assumes a held-out 20%
    of the dataset. `checkpoints`: whether the run takes checkpoints (their copies and
    bytes count in memory_bytes).
    """
    n_train = training_size(n_train_total, config)
    n_val = n_train_total - n_train
    if n_test is None:
        n_test = n_train_total // 4 + 1
    sizes = (n_features, *config.hidden_sizes, n_classes)
    dtype = config.resolved_dtype
    per_sample = 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    iterations = planned_iterations(n_train_total, config)
    samples_per_epoch = n_train
    # forward + backward (two products per layer) of every sample, every epoch
    train_flops = 3.0 * per_sample * samples_per_epoch * config.epochs
    eval_samples = min(n_train, TRAIN_EVAL_SAMPLES) + n_val
    eval_flops = per_sample * eval_samples * config.epochs + per_sample * (n_train_total + n_test)
    matmul_flops = train_flops + eval_flops
    seconds = matmul_flops / MATMUL_FLOPS_PER_SECOND[dtype] + iterations * STEP_OVERHEAD_SECONDS
    flops = matmul_flops
    if config.gradient == "numerical":
        samples = samples_per_epoch * config.epochs
        elementwise, products = _numerical_work_per_sample(sizes)
        flops += (elementwise + products) * samples
        seconds += numerical_gradient_seconds(sizes, samples)
    checkpoint = checkpoint_bytes(config, sizes)
    return CostEstimate(
        iterations=iterations,
        flops=flops,
        seconds=seconds,
        checkpoint_bytes=checkpoint,
        memory_bytes=peak_bytes(
            config, sizes, n_train, n_val, n_test, checkpoint if checkpoints else None
        ),
    )


def checkpoint_bytes(config: TrainConfig, sizes: tuple[int, ...]) -> int:
    """Upper estimate of a checkpoint: the weights, the best epoch's weights, the momentum
    velocity when there is momentum (one flat array), and a few epoch rows. No curve: its
    size does not depend on the number of iterations or epochs."""
    n_params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False))
    itemsize = 8 if config.resolved_dtype == "float64" else 4
    copies = 3 if config.momentum else 2
    n_arrays = 2 * 2 * (len(sizes) - 1) + (1 if config.momentum else 0)
    return (
        n_params * itemsize * copies
        + n_arrays * CHECKPOINT_ARRAY_BYTES
        + RECENT_EPOCHS * CHECKPOINT_EPOCH_BYTES
        + CHECKPOINT_BASE_BYTES
    )


def numerical_gradient_seconds(sizes: tuple[int, ...], samples: int) -> float:
    """Estimated seconds of numerical gradients over `samples` samples in all (one batch of
    that many, or every batch of a run) of the network with layer sizes `sizes`."""
    elementwise, products = _numerical_work_per_sample(sizes)
    per_sample = elementwise / ELEMENTWISE_PER_SECOND + products / MATMUL_FLOPS_PER_SECOND[
        "float64"]
    return per_sample * samples


def gradient_check_seconds(sizes: tuple[int, ...], batch_size: int) -> float:
    """Estimated seconds of a gradient check on one float64 batch: its numerical gradient,
    plus the forward and backward passes (negligible beside it)."""
    per_sample = 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    backprop = 3.0 * per_sample * batch_size / MATMUL_FLOPS_PER_SECOND["float64"]
    return numerical_gradient_seconds(sizes, batch_size) + backprop + STEP_OVERHEAD_SECONDS


def _numerical_work_per_sample(sizes: tuple[int, ...]) -> tuple[float, float]:
    """(element operations, matrix-product flops) per sample of one numerical gradient
    (see numerical.py). Layers before the last hidden one push every perturbed column
    through the rest of the network as batched products: those flops run at the float64
    matmul rate, not the elementwise one. (Counted as elementwise work, a batch of 10 on
    a 784-100-50-10 network was estimated at 13 s; it takes 1.0-1.6 s on one core of the
    bench machine, and is now estimated at 2.8 s.)"""
    n_layers = len(sizes) - 1
    elementwise = products = 0.0
    for layer in range(n_layers):
        n_in, n_out = sizes[layer] + 1, sizes[layer + 1]
        if layer == n_layers - 1:
            elementwise += 2 * n_in * n_out * 12  # closed forms over the classes
        elif layer == n_layers - 2:
            elementwise += 2 * n_in * n_out * 20  # series over the classes, per hidden unit
        else:
            later = zip(sizes[layer + 1 : -1], sizes[layer + 2 :], strict=False)
            products += 2 * n_in * n_out * 2.0 * sum(a * b for a, b in later)
            elementwise += 2 * n_in * n_out * 10 * sum(sizes[layer + 1 :])
    return elementwise, products
