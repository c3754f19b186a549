"""The gradient check: backprop against central differences per parameter array, timed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.advice import EXPLODE_FACTOR, chance_loss
from trainer.config import TrainConfig
from trainer.datasets import Dataset
from trainer.errors import InvalidConfig
from trainer.network import Network, init_params
from trainer.numerical import H, numerical_gradient, relative_errors
from trainer.preprocess import Standardize
from trainer.reporting import Clock
from trainer.rundata import rng_streams
from trainer.splits import make_splits

Array = np.ndarray

AGREE = 1e-6  # backprop agrees when no element's relative error is larger


@dataclass(frozen=True)
class ArrayCheck:
    """One parameter array: W1, b1, W2, ... in layer order, and its elements' errors."""

    name: str
    shape: tuple[int, ...]
    max_relative_error: float
    mean_relative_error: float


@dataclass(frozen=True)
class GradientCheck:
    """Every parameter array's errors (numerical.relative_errors), the step h, and how
    long backprop and the numerical gradient each took on the batch."""

    parameters: tuple[ArrayCheck, ...]
    h: float
    backprop_seconds: float
    numerical_seconds: float

    @property
    def max_relative_error(self) -> float:
        return max(p.max_relative_error for p in self.parameters)

    @property
    def agree(self) -> bool:
        return self.max_relative_error <= AGREE

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": [
                {"name": p.name, "shape": list(p.shape),
                 "max_relative_error": p.max_relative_error,
                 "mean_relative_error": p.mean_relative_error}
                for p in self.parameters
            ],
            "max_relative_error": self.max_relative_error,
            "agree": self.agree,
            "h": self.h,
            "numerical_seconds": self.numerical_seconds,
            "backprop_seconds": self.backprop_seconds,
        }


def parameter_names(n_layers: int) -> list[str]:
    """["W1", "b1", "W2", "b2", ...]: the order of Network.params, named as model.py does."""
    return [f"{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("W", "b")]


def check_gradients(
    net: Network, x: Array, t: Array, h: float = H, clock: Clock = time.perf_counter
) -> GradientCheck:
    """Backprop's gradient of net's batch-mean loss against central differences with step
    h. x (B, n_features) and the parameters float64, t (B,) labels. Each gradient is timed
    alone with `clock`."""
    with np.errstate(over="ignore"):  # a saturated sigmoid unit: see functions.sigmoid_
        start = clock()
        _, grads = net.gradient(x, t)
        backprop_seconds = clock() - start
        analytic = [g.copy() for g in grads]  # the next net.gradient would overwrite them
        start = clock()
        numeric = numerical_gradient(net, x, t, h)
        numerical_seconds = clock() - start
    arrays = []
    for name, a, n in zip(parameter_names(net.n_layers), analytic, numeric, strict=True):
        errors = relative_errors(a, n)
        arrays.append(ArrayCheck(name, a.shape, float(errors.max()), float(errors.mean())))
    return GradientCheck(tuple(arrays), h, backprop_seconds, numerical_seconds)


def initial_batch(config: TrainConfig, dataset: Dataset) -> tuple[Network, Array, Array]:
    """The float64 network at the weights a job of `config` starts from, and that job's
    first mini-batch: x (batch_size, n_features) float64 and t (batch_size,).

    The same random streams as the training loop (rng_streams(seed)): the same split
    (with config.validation_fraction), the same weight draws kept in float64 rather than
    the job's dtype, and the first batch_size rows of the first epoch's shuffle,
    standardized as the job's would be when the dataset asks for it. Raises
    InvalidConfig naming the field (a batch larger than the training set).
    """
    split_rng, init_rng, shuffle_rng, _ = rng_streams(config.seed)
    splits = make_splits(dataset, config.validation_fraction, split_rng)
    config.validate(splits.n_train)
    sizes = (dataset.x.shape[1], *config.hidden_sizes, dataset.n_classes)
    params = init_params(sizes, config.activation, init_rng, config.weight_init_std, "float64")
    net = Network(params, config.activation, config.loss)
    first = shuffle_rng.permutation(splits.n_train)[: config.batch_size]
    rows = splits.train_rows[first]
    if dataset.preprocess == "standardize":  # as the job would: its training rows' statistics
        standardize = Standardize.fit(splits.x_source, splits.train_rows)
        return net, standardize.apply(splits.x_source, np.float64, rows), splits.t_train[first]
    return net, splits.x_source[rows].astype(np.float64), splits.t_train[first]


def check_initial_gradients(
    config: TrainConfig, dataset: Dataset, h: float = H, clock: Clock = time.perf_counter
) -> GradientCheck:
    """check_gradients at a job's initial weights on its first batch (initial_batch).

    Uses config's hidden_sizes, activation, loss, weight_init_std, seed, batch_size and
    validation_fraction. Initial weights that already explode the loss (the limit the
    training loop applies) are refused with InvalidConfig: central differences of
    overflowing values mean nothing.
    """
    net, x, t = initial_batch(config, dataset)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = net.mean_loss(x, t)
    chance = chance_loss(config.loss, dataset.n_classes)
    if not (math.isfinite(loss) and loss <= EXPLODE_FACTOR * chance):
        raise _exploding(config, dataset.name, loss, chance)
    try:
        result = check_gradients(net, x, t, h, clock)
    except OverflowError:
        raise _exploding(config, dataset.name, loss, chance) from None
    if not math.isfinite(result.max_relative_error):
        raise _exploding(config, dataset.name, loss, chance)
    return result


def _exploding(config: TrainConfig, dataset: str, loss: float, chance: float) -> InvalidConfig:
    what = f"the initial weights give a loss of {loss:.4g} on the batch (chance is {chance:.4g})"
    std = config.weight_init_std
    if std is not None:
        return InvalidConfig(
            "weight_init_std",
            f"weight_init_std {std!r} is too large for a gradient check: {what}; use null "
            "(Xavier for sigmoid, He for relu) or the book's 0.01",
        )
    return InvalidConfig(
        "dataset",
        f"dataset {dataset!r} has features too large for a gradient check with the default "
        f"(Xavier/He) initialisation: {what}; scale them (for example, standardize them)",
    )
