"""What a run trains on: the seeded split, the training rows in the job's dtype, and sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from trainer.config import TrainConfig
from trainer.datasets import Dataset
from trainer.errors import StopCheck
from trainer.preprocess import Standardize
from trainer.splits import Splits, make_splits, split_sizes

Array = np.ndarray

TRAIN_EVAL_SAMPLES = 10_000  # per-epoch train metrics use a fixed subset of this size at most
GATHER_ROWS = 4096  # rows per piece when the training set is copied into the job's dtype


def rng_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the split, the weights, the shuffling and the eval subset."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))


def training_size(n_train_total: int, config: TrainConfig) -> int:
    """Samples the optimiser sees per epoch once the validation set is taken out."""
    return split_sizes(n_train_total, config.validation_fraction)[0]


def planned_iterations(n_train_total: int, config: TrainConfig) -> int:
    """Mini-batches of a run that goes all its epochs (the last short batch counts)."""
    return config.epochs * math.ceil(training_size(n_train_total, config) / config.batch_size)


@dataclass(frozen=True)
class RunData:
    """A run's arrays. Training rows stay in x_source and are gathered batch by batch."""

    x_source: Array
    rows: Array  # the training rows of x_source
    t_train: Array
    eval_rows: Array  # the fixed subset of `rows` that per-epoch train metrics use
    t_eval: Array
    x_val: Array
    t_val: Array
    splits: Splits  # where the test set is read, only when it is evaluated
    n_classes: int
    standardize: Standardize | None  # fitted on the training rows alone, when the dataset asks


def prepare(
    config: TrainConfig, dataset: Dataset, split_rng: np.random.Generator,
    eval_rng: np.random.Generator, check_stop: StopCheck,
) -> RunData:
    """Split the dataset; copy the training rows only if the job's dtype (or the dataset's
    standardisation, whose statistics come from the training rows alone) needs it."""
    splits = make_splits(dataset, config.validation_fraction, split_rng)
    n_train = splits.n_train
    config.validate(n_train)
    dtype = np.dtype(config.resolved_dtype)
    standardize = None
    if dataset.preprocess == "standardize":
        standardize = Standardize.fit(splits.x_source, splits.train_rows, check_stop)
        splits = replace(splits, standardize=standardize)
    if standardize is not None:
        x_source = standardize.apply(splits.x_source, dtype, splits.train_rows)
        rows = np.arange(n_train)
    elif splits.x_source.dtype == dtype and splits.x_source.flags.c_contiguous:
        x_source, rows = splits.x_source, splits.train_rows  # batches gathered in place
    else:  # in pieces: no full-size temporary in the dataset's dtype
        x_source, rows = np.empty((n_train, splits.x_source.shape[1]), dtype), np.arange(n_train)
        for start in range(0, n_train, GATHER_ROWS):
            check_stop()
            piece = splits.train_rows[start : start + GATHER_ROWS]
            x_source[start : start + len(piece)] = splits.x_source[piece]
    eval_idx = np.sort(eval_rng.permutation(n_train)[: min(n_train, TRAIN_EVAL_SAMPLES)])
    return RunData(
        x_source=x_source,
        rows=rows,
        t_train=splits.t_train,
        eval_rows=rows[eval_idx],
        t_eval=splits.t_train[eval_idx],
        # evaluate() casts each piece to the job's dtype
        x_val=splits.x_val if standardize is None else standardize.apply(splits.x_val, dtype),
        t_val=splits.t_val,
        splits=splits,
        n_classes=splits.n_classes,
        standardize=standardize,
    )
