"""Standardisation: fitted on a job's training rows alone, applied to validation and test
rows and carried by the result, so the model's inputs are prepared the same everywhere."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from trainer import TrainConfig, train
from trainer.datasets import Dataset
from trainer.preprocess import Standardize, from_meta, raw_features
from trainer.rundata import rng_streams
from trainer.splits import make_splits


def rows_dataset(preprocess: str = "standardize") -> Dataset:
    """Feature 0 is the row's number (so every subset of rows has its own mean), feature 1
    is constant, labels alternate."""
    n = 200
    x = np.column_stack([np.arange(n), np.full(n, 7.0)]).astype(np.float32)
    return Dataset("rows", x, np.arange(n) % 2, 2, preprocess=preprocess, test_fraction=0.25)


def test_the_statistics_are_the_training_rows_and_exclude_validation_and_test_rows() -> None:
    dataset = rows_dataset()
    config = TrainConfig(hidden_sizes=(4,), epochs=1, batch_size=10, seed=3,
                         validation_fraction=0.2)

    result = train(config, dataset)

    splits = make_splits(dataset, config.validation_fraction, rng_streams(config.seed)[0])
    training = dataset.x[splits.train_rows].astype(np.float64)
    test_rows = splits.test_rows
    assert test_rows is not None and len(test_rows) == 50 and len(splits.train_rows) == 120
    meta = result.preprocess
    assert meta["kind"] == "standardize"
    np.testing.assert_allclose(meta["mean"], training.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(meta["scale"][0], training[:, 0].std(), rtol=1e-12)
    assert meta["scale"][1] == 1.0  # a constant feature is left unscaled, not divided by 0
    everything = dataset.x.astype(np.float64).mean(axis=0)[0]
    with_test = dataset.x[np.concatenate([splits.train_rows, test_rows])].mean(axis=0)[0]
    assert meta["mean"][0] not in (pytest.approx(everything), pytest.approx(with_test))


def test_the_test_rows_are_standardized_with_the_training_statistics() -> None:
    dataset = rows_dataset()
    splits = make_splits(dataset, 0.2, np.random.default_rng(0))
    fitted = Standardize.fit(splits.x_source, splits.train_rows)
    scaled = replace(splits, standardize=fitted)

    np.testing.assert_allclose(scaled.x_test, (splits.x_test - fitted.mean) / fitted.scale,
                               rtol=1e-6)
    np.testing.assert_array_equal(scaled.t_test, splits.t_test)


def test_without_standardize_nothing_changes() -> None:
    result = train(TrainConfig(hidden_sizes=(4,), epochs=1, batch_size=10),
                   rows_dataset("none"))

    assert result.preprocess == {"kind": "none"}
    assert from_meta(result.preprocess) is None
    np.testing.assert_array_equal(raw_features([[1.5, 2.0]], None), [[1.5, 2.0]])


def test_raw_features_round_to_float32_first_as_stored_uploads_are() -> None:
    meta = Standardize(np.array([0.1, 0.0]), np.array([1.0, 2.0])).to_meta()

    out = raw_features([[0.1, 4.0]], meta)

    assert out.dtype == np.float64
    assert out[0, 0] == np.float64(np.float32(0.1)) - 0.1  # float32 0.1, not 0.1 exactly
    assert out[0, 1] == 2.0
