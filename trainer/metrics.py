"""Evaluation of a trained network: loss, accuracy, confusion matrix and per-class scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.errors import StopCheck
from trainer.network import Network

Array = np.ndarray

EVAL_BATCH = 4096  # bounds the memory of a forward pass over a large set


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    n: int
    predictions: Array

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss, "accuracy": self.accuracy}


def evaluate(
    net: Network, x: Array, t: Array, rows: Array | None = None,
    check_stop: StopCheck | None = None,
) -> Evaluation:
    """Mean loss and accuracy of `net` on (x, t), or on (x[rows], t), in batches.

    NaN for an empty set. With `rows`, each batch is gathered from x as it is needed.
    `check_stop`, if given, is called before each batch (it may raise to abandon the pass).
    """
    n = x.shape[0] if rows is None else len(rows)
    if n == 0:
        return Evaluation(float("nan"), float("nan"), 0, np.empty(0, dtype=np.int64))
    total = 0.0
    predictions = np.empty(n, dtype=np.int64)
    for start in range(0, n, EVAL_BATCH):
        if check_stop is not None:
            check_stop()
        stop = min(start + EVAL_BATCH, n)
        piece = x[start:stop] if rows is None else x[rows[start:stop]]
        logits = net.logits(piece.astype(net.dtype, copy=False))
        del piece  # before the next one is gathered: one piece alive at a time
        total += float(net.sample_losses_of(logits, t[start:stop]).sum())
        predictions[start:stop] = logits.argmax(axis=1)
    accuracy = float(np.mean(predictions == t))
    return Evaluation(total / n, accuracy, n, predictions)


def confusion_matrix(t: Array, predictions: Array, n_classes: int) -> Array:
    """Counts (n_classes, n_classes): rows are the true label, columns the prediction."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (t, predictions), 1)
    return matrix


def per_class(matrix: Array, classes: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class (labelled by `classes`, default
    0, 1, ...); 0.0 where a ratio is 0/0."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return [
        {
            "label": label if classes is None else classes[label],
            "precision": float(precision[label]),
            "recall": float(recall[label]),
            "f1": float(f1[label]),
            "support": int(support[label]),
        }
        for label in range(matrix.shape[0])
    ]


def report_test_set(
    net: Network, x: Array, t: Array, n_classes: int, check_stop: StopCheck | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The `test` block of a job's metrics; per_class labels are `classes` (an upload's
    own labels) when given."""
    result = evaluate(net, x, t, check_stop=check_stop)
    matrix = confusion_matrix(t, result.predictions, n_classes)
    return {
        "loss": result.loss,
        "accuracy": result.accuracy,
        "n": result.n,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class(matrix, classes),
    }
