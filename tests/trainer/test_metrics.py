"""Tests of evaluation: loss, accuracy, confusion matrix and per-class scores by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer import metrics
from trainer.metrics import confusion_matrix, evaluate, per_class, report_test_set
from trainer.network import Network, init_params

# 3 classes; class 2 has one sample and is never predicted.
T = np.array([0, 0, 0, 1, 1, 2])
P = np.array([0, 1, 0, 1, 1, 0])


def test_confusion_matrix_rows_are_the_true_label() -> None:
    matrix = confusion_matrix(T, P, 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    # a single sample: true 2, predicted 0 -> row 2, column 0
    np.testing.assert_array_equal(
        confusion_matrix(np.array([2]), np.array([0]), 3), [[0, 0, 0], [0, 0, 0], [1, 0, 0]]
    )


def test_confusion_matrix_counts_repeated_pairs() -> None:
    matrix = confusion_matrix(np.array([1, 1, 1]), np.array([1, 1, 1]), 2)
    np.testing.assert_array_equal(matrix, [[0, 0], [0, 3]])


def test_per_class_scores_by_hand_with_a_class_never_predicted() -> None:
    rows = per_class(confusion_matrix(T, P, 3))
    # class 0: tp 2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3
    # class 1: tp 2, predicted 3, support 2 -> P 2/3, R 1,   F1 0.8
    # class 2: tp 0, predicted 0 (0/0 -> 0), support 1 -> P 0, R 0, F1 0
    expected = [
        (0, 2 / 3, 2 / 3, 2 / 3, 3),
        (1, 2 / 3, 1.0, 0.8, 2),
        (2, 0.0, 0.0, 0.0, 1),
    ]
    assert [r["label"] for r in rows] == [0, 1, 2]
    for row, (label, precision, recall, f1, support) in zip(rows, expected, strict=True):
        assert row["label"] == label
        assert row["precision"] == pytest.approx(precision, abs=1e-15)
        assert row["recall"] == pytest.approx(recall, abs=1e-15)
        assert row["f1"] == pytest.approx(f1, abs=1e-15)
        assert row["support"] == support
        assert type(row["support"]) is int
        assert all(type(row[k]) is float for k in ("precision", "recall", "f1"))
        assert all(math.isfinite(row[k]) for k in ("precision", "recall", "f1"))


def test_per_class_of_a_class_absent_everywhere_is_all_zero() -> None:
    rows = per_class(confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3))
    assert rows[2] == {"label": 2, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rows[0]["f1"] == 1.0 and rows[1]["f1"] == 1.0


def small_net(dtype: str = "float64") -> Network:
    rng = np.random.default_rng(0)
    return Network(init_params((3, 4, 3), "relu", rng, dtype=dtype), "relu", "cross_entropy")


def test_evaluate_is_the_mean_loss_and_accuracy_of_the_set() -> None:
    net = small_net()
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(20, 3)), rng.integers(0, 3, size=20)
    result = evaluate(net, x, t)
    assert result.n == 20
    assert result.loss == pytest.approx(net.mean_loss(x, t), rel=1e-12)
    np.testing.assert_array_equal(result.predictions, net.predict(x))
    assert result.accuracy == pytest.approx(float(np.mean(net.predict(x) == t)))
    assert result.summary() == {"loss": result.loss, "accuracy": result.accuracy}


def test_evaluate_in_small_batches_gives_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    net = small_net()
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(23, 3)), rng.integers(0, 3, size=23)
    whole = evaluate(net, x, t)
    monkeypatch.setattr(metrics, "EVAL_BATCH", 5)
    batched = evaluate(net, x, t)
    assert batched.loss == pytest.approx(whole.loss, rel=1e-13)
    assert batched.accuracy == whole.accuracy
    np.testing.assert_array_equal(batched.predictions, whole.predictions)


def test_evaluate_casts_inputs_to_the_networks_dtype() -> None:
    net = small_net("float32")
    x = np.random.default_rng(3).normal(size=(4, 3))  # float64 in, float32 net
    result = evaluate(net, x, np.array([0, 1, 2, 0]))
    assert math.isfinite(result.loss)


def test_evaluate_of_an_empty_set_is_nan() -> None:
    result = evaluate(small_net(), np.empty((0, 3)), np.empty(0, dtype=np.int64))
    assert result.n == 0
    assert math.isnan(result.loss) and math.isnan(result.accuracy)


def test_report_test_set_is_consistent_with_its_parts() -> None:
    net = small_net()
    rng = np.random.default_rng(4)
    x, t = rng.normal(size=(30, 3)), rng.integers(0, 3, size=30)
    report = report_test_set(net, x, t, 3)
    assert set(report) == {"loss", "accuracy", "n", "confusion_matrix", "per_class"}
    assert report["n"] == 30
    matrix = np.array(report["confusion_matrix"])
    assert isinstance(report["confusion_matrix"], list)
    assert matrix.sum() == 30
    assert np.trace(matrix) / 30 == pytest.approx(report["accuracy"])
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(t, minlength=3))
    assert [r["support"] for r in report["per_class"]] == np.bincount(t, minlength=3).tolist()
    assert report["loss"] == pytest.approx(net.mean_loss(x, t), rel=1e-12)
