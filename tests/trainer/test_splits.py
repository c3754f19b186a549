"""Tests of the splits: predicted sizes, determinism, disjointness and stratification."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.datasets import Dataset
from trainer.errors import DatasetError, InvalidConfig
from trainer.splits import (
    DEFAULT_TEST_FRACTION,
    Splits,
    held_out_test_size,
    make_splits,
    split_sizes,
    stratified_counts,
)


def row_id_dataset(
    counts: list[int], n_features: int = 3, test_counts: list[int] | None = None
) -> Dataset:
    """Labels with the given class counts, shuffled; feature 0 of each row is its row id."""
    rng = np.random.default_rng(123)
    t = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
    x = np.zeros((len(t), n_features), dtype=np.float32)
    x[:, 0] = np.arange(len(t))
    x_test = t_test = None
    if test_counts is not None:
        t_test = np.repeat(np.arange(len(test_counts)), test_counts).astype(np.int64)
        x_test = np.full((len(t_test), n_features), -1.0, dtype=np.float32)
        x_test[:, 0] = -1 - np.arange(len(t_test))
    return Dataset("ids", x, t, len(counts), x_test, t_test)


def ids(x: np.ndarray) -> np.ndarray:
    return x[:, 0].astype(np.int64)


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(100, 0.1, (90, 10)), (100, 0.0, (100, 0)), (7, 0.5, (3, 4)), (2, 0.9, (1, 1)),
     (1, 0.5, (1, 0)), (60000, 0.1, (54000, 6000))],
)
def test_split_sizes(n: int, fraction: float, expected: tuple[int, int]) -> None:
    assert split_sizes(n, fraction) == expected


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_sizes_rejects_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(InvalidConfig, match=f"validation_fraction must be .* got {fraction}"):
        split_sizes(10, fraction)


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(900, DEFAULT_TEST_FRACTION, 180), (1797, 0.2, 359), (5, 0.01, 1), (2, 0.99, 1)],
)
def test_held_out_test_size(n: int, fraction: float, expected: int) -> None:
    assert held_out_test_size(n, fraction) == expected


def test_held_out_test_size_rejects_bad_input() -> None:
    with pytest.raises(DatasetError, match="at least 2 samples .* got 1"):
        held_out_test_size(1)
    with pytest.raises(InvalidConfig, match="test_fraction must be > 0 and < 1, got 0"):
        held_out_test_size(10, 0)


def test_stratified_counts_sum_exactly_and_stay_proportional() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        counts = rng.integers(1, 50, size=rng.integers(2, 8))
        total = int(rng.integers(0, counts.sum() + 1))
        taken = stratified_counts(counts, total)
        quota = counts * total / counts.sum()
        assert taken.sum() == total
        assert np.all(taken >= np.floor(quota)) and np.all(taken <= np.ceil(quota))
        assert np.all(taken <= counts)


@pytest.mark.parametrize(
    ("counts", "validation_fraction"),
    [([50, 30, 20], 0.1), ([7, 11, 3, 1], 0.25), ([1, 1], 0.5), ([333, 333, 334], 0.0)],
)
def test_held_out_splits_are_disjoint_and_sized_as_predicted(
    counts: list[int], validation_fraction: float
) -> None:
    dataset = row_id_dataset(counts)
    n = len(dataset.t)
    splits = make_splits(dataset, validation_fraction, np.random.default_rng(0))
    n_test = held_out_test_size(n)
    n_train, n_val = split_sizes(n - n_test, validation_fraction)
    assert (len(splits.t_train), len(splits.t_val), len(splits.t_test)) == (n_train, n_val, n_test)
    train, val, test = ids(splits.x_train), ids(splits.x_val), ids(splits.x_test)
    everything = np.concatenate([train, val, test])
    assert len(np.unique(everything)) == n  # no row twice, none lost
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    for part, labels in ((train, splits.t_train), (val, splits.t_val), (test, splits.t_test)):
        np.testing.assert_array_equal(dataset.t[part], labels)  # rows keep their labels


def test_own_test_split_is_kept_and_never_mixed_into_training() -> None:
    dataset = row_id_dataset([40, 60], test_counts=[5, 7])
    splits = make_splits(dataset, 0.2, np.random.default_rng(1))
    assert dataset.x_test is not None and dataset.t_test is not None
    np.testing.assert_array_equal(splits.x_test, dataset.x_test)
    np.testing.assert_array_equal(splits.t_test, dataset.t_test)
    assert not np.shares_memory(splits.x_test, dataset.x_test)
    train_val = np.concatenate([ids(splits.x_train), ids(splits.x_val)])
    np.testing.assert_array_equal(np.sort(train_val), np.arange(100))
    assert (len(splits.t_train), len(splits.t_val)) == split_sizes(100, 0.2)


def test_splits_are_stratified_by_label() -> None:
    counts = [500, 300, 150, 50]
    dataset = row_id_dataset(counts)
    splits = make_splits(dataset, 0.1, np.random.default_rng(2))
    n_test = held_out_test_size(1000)
    test_quota = np.array(counts) * n_test / 1000
    test_counts = np.bincount(splits.t_test, minlength=4)
    assert np.all(np.abs(test_counts - test_quota) < 1)
    remaining = np.array(counts) - test_counts
    val_quota = remaining * len(splits.t_val) / remaining.sum()
    assert np.all(np.abs(np.bincount(splits.t_val, minlength=4) - val_quota) < 1)


def test_same_seed_gives_the_same_splits() -> None:
    dataset = row_id_dataset([30, 30, 40])
    first = make_splits(dataset, 0.2, np.random.default_rng(42))
    second = make_splits(dataset, 0.2, np.random.default_rng(42))
    for name in ("x_train", "t_train", "x_val", "t_val", "x_test", "t_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_different_seeds_give_different_splits() -> None:
    dataset = row_id_dataset([30, 30, 40])
    first = make_splits(dataset, 0.2, np.random.default_rng(1))
    second = make_splits(dataset, 0.2, np.random.default_rng(2))
    assert set(ids(first.x_test)) != set(ids(second.x_test))
    assert set(ids(first.x_val)) != set(ids(second.x_val))


def test_zero_validation_fraction_gives_empty_arrays_of_the_right_shape() -> None:
    dataset = row_id_dataset([10, 10], n_features=5)
    splits = make_splits(dataset, 0.0, np.random.default_rng(0))
    assert splits.x_val.shape == (0, 5) and splits.x_val.dtype == np.float32
    assert splits.t_val.shape == (0,) and splits.t_val.dtype == np.int64
    assert len(splits.t_train) == 20 - held_out_test_size(20)


def test_outputs_are_new_c_contiguous_arrays() -> None:
    dataset = row_id_dataset([20, 20])
    splits = make_splits(dataset, 0.25, np.random.default_rng(0))
    assert isinstance(splits, Splits) and splits.n_classes == 2
    for name in ("x_train", "t_train", "x_val", "t_val", "x_test", "t_test"):
        array = getattr(splits, name)
        assert array.flags.c_contiguous, name
        source = dataset.x if name.startswith("x") else dataset.t
        assert not np.shares_memory(array, source), name
