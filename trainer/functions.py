"""Activations, softmax and the book's two losses, as name -> function tables."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainer.errors import InvalidConfig

Array = np.ndarray

BOOK_DELTA = 1e-7  # the book's guard against log(0) for probabilities handed in directly


def sigmoid(a: Array) -> Array:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def sigmoid_(a: Array) -> Array:
    """In place: a <- 1 / (1 + exp(-a)); four passes, no temporaries.

    exp overflows to inf for a < -88 (float32), and 1 / (1 + inf) is the right 0; callers
    on a hot path silence that warning once around their loop (np.errstate costs as much
    as the rest of this function on a small array).
    """
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1.0
    np.reciprocal(a, out=a)
    return a


def relu(a: Array) -> Array:
    return np.maximum(a, 0.0)


def relu_(a: Array) -> Array:
    np.maximum(a, 0.0, out=a)
    return a


def sigmoid_grad_from_output_(dz: Array, z: Array) -> Array:
    """In place: dz <- dz * z * (1 - z), where z = sigmoid(a)."""
    dz *= z
    dz -= dz * z
    return dz


def relu_grad_from_output_(dz: Array, z: Array) -> Array:
    """In place: dz <- dz where z > 0 else 0, where z = relu(a)."""
    dz *= z > 0
    return dz


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"sigmoid": sigmoid, "relu": relu}
ACTIVATIONS_INPLACE: dict[str, Callable[[Array], Array]] = {"sigmoid": sigmoid_, "relu": relu_}
ACTIVATION_GRADS_INPLACE: dict[str, Callable[[Array, Array], Array]] = {
    "sigmoid": sigmoid_grad_from_output_,
    "relu": relu_grad_from_output_,
}


def lookup(table: dict[str, Callable[..., Array]], field: str, name: str) -> Callable[..., Array]:
    try:
        return table[name]
    except KeyError:
        raise InvalidConfig(
            field, f"{field} must be one of {', '.join(sorted(table))}; got {name!r}"
        ) from None


def softmax(a: Array) -> Array:
    """Row-wise softmax of logits (n, k), shifted by the row max so exp never overflows."""
    shifted = a - a.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(a: Array) -> Array:
    shifted = a - a.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot(t: Array, n_classes: int, dtype: type | np.dtype = np.float64) -> Array:
    out = np.zeros((t.shape[0], n_classes), dtype=dtype)
    out[np.arange(t.shape[0]), t] = 1
    return out


def _as_batch(y: Array, t: Array) -> tuple[Array, Array]:
    """The book's convention: a single sample becomes a batch of one; labels may be one-hot."""
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t)
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = t.reshape(1, -1) if t.ndim == 1 and t.size == y.size else t.reshape(-1)
    if t.ndim == 2:
        t = t.argmax(axis=1)
    return y, t.astype(np.int64)


def sum_squares_error(y: Array, t: Array) -> float:
    """0.5 * sum((y - t)^2) per sample, batch mean; y (n, k) probabilities, t labels or one-hot."""
    y, labels = _as_batch(y, t)
    diff = y.copy()
    diff[np.arange(y.shape[0]), labels] -= 1.0
    return float(0.5 * np.sum(diff * diff) / y.shape[0])


def cross_entropy_error(y: Array, t: Array) -> float:
    """-sum(t * log(y + 1e-7)) per sample, batch mean; the book's form for probabilities."""
    y, labels = _as_batch(y, t)
    return float(-np.sum(np.log(y[np.arange(y.shape[0]), labels] + BOOK_DELTA)) / y.shape[0])


def cross_entropy_from_logits(a: Array, t: Array) -> Array:
    """Per-sample -log softmax(a)[t], computed stably; a (..., n, k), t (n,) labels."""
    m = a.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(a - m).sum(axis=-1)) + m[..., 0]
    picked = np.take_along_axis(a, np.broadcast_to(t[:, None], a.shape[:-1] + (1,)), -1)[..., 0]
    return lse - picked


def sum_squares_from_logits(a: Array, t: Array) -> Array:
    """Per-sample 0.5 * sum((softmax(a) - onehot(t))^2); a (..., n, k), t (n,) labels."""
    y = softmax(a)
    idx = np.broadcast_to(t[:, None], a.shape[:-1] + (1,))
    y_t = np.take_along_axis(y, idx, -1)[..., 0]
    return 0.5 * ((y * y).sum(axis=-1) - 2.0 * y_t + 1.0)


# Per-sample losses of logits: what the network minimises (stable; the exact function that
# both backprop and the numerical gradient differentiate).
LOSSES_FROM_LOGITS: dict[str, Callable[[Array, Array], Array]] = {
    "cross_entropy": cross_entropy_from_logits,
    "sum_squares": sum_squares_from_logits,
}
# The book's definitions on probabilities, kept for the worked examples and for users.
LOSSES_ON_PROBABILITIES: dict[str, Callable[[Array, Array], float]] = {
    "cross_entropy": cross_entropy_error,
    "sum_squares": sum_squares_error,
}
