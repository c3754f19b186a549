"""Tests of the trained model's byte form: a plain .npz that rebuilds the same Network."""

from __future__ import annotations

import io

import numpy as np
import pytest

from trainer import TrainConfig, TrainerError, load_dataset, model_from_bytes, model_to_bytes, train
from trainer.metrics import evaluate
from trainer.network import Network, init_params
from trainer.rundata import rng_streams
from trainer.splits import make_splits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_model_round_trips_bitwise(dtype: str) -> None:
    params = init_params((5, 7, 4, 3), "relu", np.random.default_rng(0), dtype=dtype)
    params[1] += 0.25  # non-zero biases, so W and b cannot be swapped unnoticed
    blob = model_to_bytes(params, "relu", "sum_squares")
    net = model_from_bytes(blob)
    assert (net.activation, net.loss) == ("relu", "sum_squares")
    assert len(net.params) == len(params)
    for mine, theirs in zip(net.params, params, strict=True):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        np.testing.assert_array_equal(mine, theirs)


def test_the_bytes_are_an_npz_with_the_books_names() -> None:
    params = init_params((4, 6, 3), "sigmoid", np.random.default_rng(1))
    with np.load(io.BytesIO(model_to_bytes(params, "sigmoid", "cross_entropy"))) as data:
        assert sorted(data.files) == ["W1", "W2", "b1", "b2", "meta"]
        np.testing.assert_array_equal(data["W2"], params[2])
        assert b'"sizes": [4, 6, 3]' in bytes(data["meta"])


@pytest.mark.parametrize(
    ("blob", "says"),
    [
        (b"not a model", "model is unreadable"),
        (b"", "model is unreadable"),
    ],
)
def test_bytes_that_are_not_a_model_raise_a_trainer_error(blob: bytes, says: str) -> None:
    with pytest.raises(TrainerError, match=says):
        model_from_bytes(blob)


def test_a_model_without_its_activation_is_refused() -> None:
    buffer = io.BytesIO()
    meta = b'{"format": "descent-model/1", "loss": "cross_entropy", "sizes": [2, 2]}'
    np.savez(buffer, meta=np.frombuffer(meta, np.uint8), W1=np.eye(2), b1=np.zeros(2))
    with pytest.raises(TrainerError, match="model is unreadable: 'activation'"):
        model_from_bytes(buffer.getvalue())


def test_an_npz_of_another_format_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"format": "other/9"}', np.uint8), W1=np.eye(2))
    with pytest.raises(TrainerError, match="format 'other/9'"):
        model_from_bytes(buffer.getvalue())


def test_a_trained_model_reproduces_its_test_metrics() -> None:
    config = TrainConfig(hidden_sizes=(16,), activation="relu", learning_rate=0.5,
                         batch_size=50, epochs=5, early_stopping_patience=2, seed=3)
    dataset = load_dataset("spiral")
    result = train(config, dataset)
    net = model_from_bytes(model_to_bytes(result.params, config.activation, config.loss))
    splits = make_splits(dataset, config.validation_fraction, rng_streams(config.seed)[0])
    test = evaluate(net, splits.x_test, splits.t_test)
    assert test.accuracy == result.metrics["test"]["accuracy"]
    assert test.loss == pytest.approx(result.metrics["test"]["loss"], rel=1e-12)
    fresh = Network(init_params((2, 16, 3), "relu", np.random.default_rng(0)), "relu",
                    "cross_entropy")
    assert evaluate(fresh, splits.x_test, splits.t_test).accuracy < test.accuracy
