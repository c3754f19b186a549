"""The book-style float64 two-layer net (Deep Learning from Scratch, ch. 4): the oracle.

Written the way the book's `two_layer_net.py` is, on purpose: allocating NumPy
expressions, a params dict, softmax probabilities fed to `cross_entropy_error` with the
1e-7 delta, and the central-difference `numerical_gradient` that runs two full forward
passes per parameter. Only the book's habits that the project's style rules out are gone:
no `from x import *`, no global `np.random` (pass a Generator), and the training loop
visits every sample once per epoch instead of sampling batches with replacement.
Descent's trainer is measured against this (bench/trainer_bench.py) and must match its
accuracy (tests/trainer/test_fashion_mnist.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray

BOOK_DELTA = 1e-7  # the book's guard against log(0) in cross_entropy_error
BOOK_H = 1e-4  # the book's central-difference step


def sigmoid(x: Array) -> Array:
    return 1 / (1 + np.exp(-x))


def sigmoid_grad(x: Array) -> Array:
    """d sigmoid / dx at the pre-activation x."""
    return (1.0 - sigmoid(x)) * sigmoid(x)


def softmax(x: Array) -> Array:
    x = x - np.max(x, axis=-1, keepdims=True)  # no overflow in exp
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def one_hot(t: Array, n_classes: int) -> Array:
    """(n, n_classes) one-hot rows of integer labels t (n,); one-hot input comes back as is."""
    if t.ndim == 2:
        return t
    out = np.zeros((t.size, n_classes))
    out[np.arange(t.size), t] = 1
    return out


def sum_squares_error(y: Array, t: Array) -> float:
    """0.5 * sum((y - t)^2), batch mean; y (n, k) probabilities, t (n, k) one-hot."""
    return float(0.5 * np.sum((y - t) ** 2) / y.shape[0])


def cross_entropy_error(y: Array, t: Array, delta: float = BOOK_DELTA) -> float:
    """-sum(t * log(y + delta)), batch mean; y (n, k) probabilities, t (n, k) one-hot."""
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return float(-np.sum(np.log(y[np.arange(batch_size), t] + delta)) / batch_size)


LOSSES: dict[str, Callable[..., float]] = {
    "cross_entropy": cross_entropy_error,
    "sum_squares": sum_squares_error,
}


def numerical_gradient(f: Callable[[Array], float], x: Array, h: float = BOOK_H) -> Array:
    """The book's central difference (f(x + h) - f(x - h)) / 2h for every entry of x.

    x is perturbed in place (a view into a parameter works) and restored entry by entry.
    """
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
    return grad


class TwoLayerNet:
    """input -> affine -> sigmoid -> affine -> softmax, params W1 (in, hidden), b1, W2, b2.

    Methods take x (n, input_size) and t as integer labels (n,) or one-hot rows (n, k).
    `delta` is cross_entropy_error's guard: the book's 1e-7 by default; 0 gives the exact
    softmax cross-entropy that Descent differentiates (the 1e-7 moves the gradient by about
    delta / y_t relative, 1e-6 when the net is fresh and every y is 0.1).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        rng: np.random.Generator,
        weight_init_std: float = 0.01,
        loss: str = "cross_entropy",
        dtype: type | np.dtype = np.float64,
        delta: float = BOOK_DELTA,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.loss_name = loss
        self.delta = delta
        self.output_size = output_size
        self.params: dict[str, Array] = {
            "W1": (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }

    def predict(self, x: Array) -> Array:
        """Softmax probabilities (n, output_size)."""
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        return softmax(a2)

    def loss(self, x: Array, t: Array) -> float:
        y = self.predict(x)
        t = one_hot(t, self.output_size)
        if self.loss_name == "cross_entropy":
            return cross_entropy_error(y, t, self.delta)
        return sum_squares_error(y, t)

    def accuracy(self, x: Array, t: Array) -> float:
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return float(np.sum(y == t) / float(x.shape[0]))

    def numerical_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Central differences of `loss` for every parameter: the slow oracle."""
        t = one_hot(t, self.output_size)

        def loss_w(_: Array) -> float:
            return self.loss(x, t)

        return {key: numerical_gradient(loss_w, param) for key, param in self.params.items()}

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Backpropagation as in the book's two_layer_net.py (ch. 4)."""
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        t = one_hot(t, self.output_size)
        grads = {}
        batch_num = x.shape[0]

        # forward
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = softmax(a2)

        # backward: softmax with cross-entropy gives (y - t); the book's formula, which
        # ignores the 1e-7 delta. sum_squares goes through the softmax's Jacobian as well.
        dy = (y - t) / batch_num
        if self.loss_name == "sum_squares":
            dy = y * (dy - np.sum(dy * y, axis=1, keepdims=True))
        grads["W2"] = np.dot(z1.T, dy)
        grads["b2"] = np.sum(dy, axis=0)

        da1 = np.dot(dy, W2.T)
        dz1 = sigmoid_grad(a1) * da1
        grads["W1"] = np.dot(x.T, dz1)
        grads["b1"] = np.sum(dz1, axis=0)
        return grads


def sgd_step(net: TwoLayerNet, x_batch: Array, t_batch: Array, learning_rate: float) -> None:
    """One step of the book's training loop: backprop, then params -= lr * grad."""
    grad = net.gradient(x_batch, t_batch)
    for key in ("W1", "b1", "W2", "b2"):
        net.params[key] -= learning_rate * grad[key]


@dataclass(frozen=True)
class ReferenceResult:
    test_accuracy: float
    train_accuracy: float
    losses: Array  # (iterations,): the book's loss of each mini-batch, taken after its step


def train_reference(
    x_train: Array,
    t_train: Array,
    x_test: Array,
    t_test: Array,
    *,
    hidden: int = 50,
    lr: float = 0.1,
    batch: int = 100,
    epochs: int = 10,
    seed: int = 0,
    weight_init_std: float = 0.01,
    dtype: type | np.dtype = np.float64,
) -> ReferenceResult:
    """The book's train_neuralnet.py, except that each epoch visits every sample once.

    x_* (n, n_features), t_* (n,) integer labels. Uses one Generator seeded with `seed`
    for the weights, then for the shuffles.
    """
    rng = np.random.default_rng(seed)
    x_train = np.asarray(x_train, dtype=dtype)
    x_test = np.asarray(x_test, dtype=dtype)
    n_classes = int(max(t_train.max(), t_test.max())) + 1
    net = TwoLayerNet(
        x_train.shape[1], hidden, n_classes, rng, weight_init_std=weight_init_std, dtype=dtype
    )
    train_size = x_train.shape[0]
    losses = []
    for _ in range(epochs):
        order = rng.permutation(train_size)
        for start in range(0, train_size, batch):
            batch_mask = order[start : start + batch]
            x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
            sgd_step(net, x_batch, t_batch, lr)
            losses.append(net.loss(x_batch, t_batch))
    return ReferenceResult(
        test_accuracy=net.accuracy(x_test, t_test),
        train_accuracy=net.accuracy(x_train, t_train),
        losses=np.asarray(losses),
    )
