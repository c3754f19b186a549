"""Deterministic, stratified train / validation / test splits and the sizes they will have."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainer.errors import DatasetError, InvalidConfig

if TYPE_CHECKING:
    from trainer.datasets import Dataset
    from trainer.preprocess import Standardize

DEFAULT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Splits:
    """The three disjoint sets of one job; x_* are (n, n_features), t_* are (n,) int labels.

    The training rows are not copied: they stay in `x_source` (the dataset's own array) at
    `train_rows`, and mini-batches are gathered from there. For Fashion-MNIST that saves a
    188 MB copy per job; `x_train` makes the copy for whoever wants it.

    The test set is not read at all until `x_test` or `t_test` is asked for: a sweep's
    trials train and validate without touching it (the test of that lives in
    tests/trainer/test_loop.py).
    """

    x_source: np.ndarray
    train_rows: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray
    t_val: np.ndarray
    test_source: tuple[np.ndarray, np.ndarray]  # (x, t) arrays that hold the test rows
    test_rows: np.ndarray | None  # which rows of them (None: all, the dataset's own split)
    n_classes: int
    standardize: Standardize | None = None  # applied to the test rows as they are read

    @property
    def x_train(self) -> np.ndarray:
        return self.x_source[self.train_rows]

    @property
    def x_test(self) -> np.ndarray:
        """The test rows, read now (a C-contiguous copy)."""
        return self._test(0)

    @property
    def t_test(self) -> np.ndarray:
        return self._test(1)

    def _test(self, which: int) -> np.ndarray:
        source = self.test_source[which]
        rows = np.array(source, order="C", copy=True) if self.test_rows is None \
            else source[self.test_rows]
        if which == 0 and self.standardize is not None:
            return self.standardize.apply(rows, rows.dtype)
        return rows

    @property
    def n_train(self) -> int:
        return len(self.train_rows)


def split_sizes(n_train_total: int, validation_fraction: float) -> tuple[int, int]:
    """(n_train, n_val) after taking `validation_fraction` of `n_train_total` samples.

    n_val = round(n * fraction), capped so that at least one training sample remains.
    """
    if not 0 <= validation_fraction < 1:
        raise InvalidConfig(
            "validation_fraction",
            f"validation_fraction must be >= 0 and < 1, got {validation_fraction!r}",
        )
    if n_train_total < 1:
        raise DatasetError(f"need at least 1 training sample, got {n_train_total}")
    n_val = min(round(n_train_total * validation_fraction), n_train_total - 1)
    return n_train_total - n_val, n_val


def held_out_test_size(n: int, test_fraction: float = DEFAULT_TEST_FRACTION) -> int:
    """Size of the test set held out of `n` samples of a dataset without its own test split.

    round(n * test_fraction), at least 1 and at most n - 1 (a sample must remain to train on).
    """
    if not 0 < test_fraction < 1:
        raise InvalidConfig(
            "test_fraction", f"test_fraction must be > 0 and < 1, got {test_fraction!r}"
        )
    if n < 2:
        raise DatasetError(f"need at least 2 samples to hold out a test set, got {n}")
    return min(max(round(n * test_fraction), 1), n - 1)


def make_splits(
    dataset: Dataset,
    validation_fraction: float,
    rng: np.random.Generator,
) -> Splits:
    """Split `dataset` into train / validation / test, stratified by label.

    The test set is the dataset's own when it has one, else `held_out_test_size` samples
    (of the dataset's test_fraction);
    the validation set is then `split_sizes(...)[1]` of the remaining samples. The result
    depends only on the data, the fractions and the state of `rng`; every array but
    `x_source` (and the test set, read only when asked for) is a new C-contiguous copy and
    no sample lands in two sets.
    """
    x, t = dataset.x, dataset.t
    test_rows: np.ndarray | None = None
    if dataset.x_test is not None and dataset.t_test is not None:
        test_source = (dataset.x_test, dataset.t_test)
        pool = np.arange(len(t))
    else:
        n_test = held_out_test_size(len(t), dataset.test_fraction)
        test_rows, pool = _stratified_take(t, np.arange(len(t)), n_test, rng)
        test_source = (x, t)
    _, n_val = split_sizes(len(pool), validation_fraction)
    val_idx, train_idx = _stratified_take(t, pool, n_val, rng)
    return Splits(
        x_source=x,
        train_rows=train_idx,
        t_train=t[train_idx],
        x_val=x[val_idx],
        t_val=t[val_idx],
        test_source=test_source,
        test_rows=test_rows,
        n_classes=dataset.n_classes,
    )


def stratified_counts(class_counts: np.ndarray, total: int) -> np.ndarray:
    """How many of `total` samples to take from each class, proportional to `class_counts`.

    Largest remainder with exact integer arithmetic: the counts sum to `total` exactly,
    and ties between equal remainders go to the lower class index.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    n = int(counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"total must be between 0 and {n}, got {total}")
    if n == 0:
        return np.zeros_like(counts)
    quota, remainder = np.divmod(counts * total, n)
    missing = total - int(quota.sum())
    # Stable sort on the negated remainders: the largest first, lower index on ties.
    quota[np.argsort(-remainder, kind="stable")[:missing]] += 1
    return quota


def _stratified_take(
    t: np.ndarray, indices: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` (into t) into (taken, rest) with len(taken) == size, stratified by t.

    Both parts come back in a random order drawn from `rng`.
    """
    # Random order within each class: shuffle, then a stable sort groups by label.
    shuffled = indices[rng.permutation(len(indices))]
    grouped = shuffled[np.argsort(t[shuffled], kind="stable")]
    _, counts = np.unique(t[indices], return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    take = stratified_counts(counts, size)
    # group[i]: which class (0..k-1 among the labels present) grouped[i] belongs to.
    group = np.repeat(np.arange(len(counts)), counts)
    position = np.arange(len(grouped)) - starts[group]
    chosen = position < take[group]
    taken, rest = grouped[chosen], grouped[~chosen]
    return taken[rng.permutation(len(taken))], rest[rng.permutation(len(rest))]
