"""Numerical differentiation: central differences for every parameter, and the gradient check."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trainer.errors import StopCheck
from trainer.functions import softmax
from trainer.last_hidden import Chunks, last_hidden_layer
from trainer.network import Network

Array = np.ndarray

H = 1e-4
CHUNK_ELEMENTS = 1 << 16  # 512 KiB of float64 per working array: stays in cache
TINY = 1e-30  # the scale of an array whose gradients are all zero


def numerical_gradient(
    net: Network, x: Array, t: Array, h: float = H, check_stop: StopCheck | None = None
) -> list[Array]:
    """Central-difference gradient of net's batch-mean loss for every parameter.

    x (B, n_features) and the network's parameters must be float64; t (B,) labels.
    Returns arrays shaped like `net.params`. `check_stop`, if given, is called between
    layers and between chunks of work; it may raise (the training loop's raises Stopped).

    The gradient of every parameter w is (f(w + h) - f(w - h)) / 2h, in float64, where f
    is the batch-mean loss of the whole network: the book's method, not a shortcut through
    backprop. It is made practical by evaluating the perturbed losses together: perturbing
    W_l[i, j] (or b_l[j]) by s*h only moves column j of layer l's pre-activation, by s*h*z_i
    (z the layer's input, 1 for the bias). So for one column j the perturbed pre-activations
    of every i form one (P, B) array, and the rest of the network is applied to all of them
    at once:

    - output layer: logit j moves by e; the softmax losses of the moved logits have closed
      forms in p = softmax(logits) and exp(e) (no approximation).
    - last hidden layer: hidden unit j moves by d = act(a + e) - act(a) (sigmoid evaluated
      as 1 / (1 + exp(-a) exp(-e)), exactly), the logits by d * W[j]. The softmax
      normaliser sum_k p_k exp(d u_k) is evaluated for every (i, b, j) by summing the
      exponential series over k first (the moments of u under p): with |d u| ~ 1e-5 a few
      terms reach float64 rounding, and the truncation bound is checked per chunk; chunks
      where it is not small fall back to calling exp on every element (last_hidden.py).
    - earlier layers: the perturbed columns are pushed through the remaining layers as
      batched matrix products (Network.forward_from).

    Each chunk computes f(w +- h) - f(w) per perturbation, so the large common f(w) cancels
    before rounding can hurt. `tests/trainer/oracle.py` keeps the straightforward version
    (two full forward passes per parameter) that this must agree with.
    """
    if net.dtype != np.float64 or x.dtype != np.float64:
        raise TypeError("numerical_gradient needs float64 parameters and inputs")
    with np.errstate(over="ignore"):  # saturated sigmoid units: see functions.sigmoid_
        return _numerical_gradient(net, x, t, h, check_stop)


def _numerical_gradient(
    net: Network, x: Array, t: Array, h: float, check_stop: StopCheck | None
) -> list[Array]:
    def chunks(n_rows: int) -> Chunks:
        """Slices of at most CHUNK_ELEMENTS elements of rows of `row_elements` each."""

        def slices(row_elements: int) -> Iterator[slice]:
            step = max(1, CHUNK_ELEMENTS // max(row_elements, 1))
            for start in range(0, n_rows, step):
                if check_stop is not None:
                    check_stop()
                yield slice(start, min(start + step, n_rows))

        return slices

    inputs, logits = net.forward(x)
    n_layers = net.n_layers
    batch = x.shape[0]
    grads: list[Array] = []
    for layer in range(n_layers):
        z = np.concatenate([inputs[layer], np.ones((batch, 1))], axis=1)
        shifts = h * z.T  # (P, B): pre-activation moves of +h on W[i, :] (and b: z_i = 1)
        rows = chunks(shifts.shape[0])
        if layer == n_layers - 1:
            plus, minus = _output_layer(logits, t, shifts, net.loss, rows)
        elif layer == n_layers - 2:
            w, b = net.weights(layer)
            pre = inputs[layer] @ w + b
            w_out = net.weights(layer + 1)[0]
            plus, minus = last_hidden_layer(pre, w_out, logits, t, shifts, net, rows)
        else:
            plus, minus = _deep_layer(net, inputs, layer, t, shifts, rows)
        g = (plus - minus) / (2 * h)
        grads.extend([np.ascontiguousarray(g[:-1]), np.ascontiguousarray(g[-1])])
    return grads


def gradient_check(net: Network, x: Array, t: Array, h: float = H) -> list[float]:
    """The largest relative error (see relative_errors) of each parameter array."""
    _, analytic = net.gradient(x, t)
    analytic = [g.copy() for g in analytic]
    numeric = numerical_gradient(net, x, t, h)
    return [
        float(relative_errors(a, n).max()) for a, n in zip(analytic, numeric, strict=True)
    ]


def relative_errors(analytic: Array, numeric: Array) -> Array:
    """|a - n| / max(max|a| + max|n|, tiny) per element: each element's error relative to
    the scale of its whole array (both shaped like one parameter array).

    Not |a - n| / (|a| + |n|) element by element: a correct backprop would then fail a
    1e-6 test wherever a gradient is near zero: central differences carry an absolute
    error that does not shrink with the gradient. Measured at the initial weights of a
    784-30-30-30-10 sigmoid network on a batch of 10 Fashion-MNIST images, a first-layer
    element of 3.5e-10 (the array's largest: 2e-3) gave 3e-4 element by element; this
    way the worst element is 6e-10.
    """
    scale = max(float(np.abs(analytic).max() + np.abs(numeric).max()), TINY)
    return np.abs(analytic - numeric) / scale


def _output_layer(
    logits: Array, t: Array, shifts: Array, loss: str, chunks: Chunks
) -> tuple[Array, Array]:
    """Mean loss changes (P, K) when logit column k moves by +-shifts[i, b], all (i, k)."""
    p = softmax(logits)
    batch, n_classes = p.shape
    rows = np.arange(batch)
    is_target = np.zeros_like(p, dtype=bool)
    is_target[rows, t] = True
    p_t = p[rows, t]
    sq = (p * p).sum(axis=1)
    results = []
    for sign in (1.0, -1.0):
        out = np.empty((shifts.shape[0], n_classes))
        for chunk in chunks(batch * n_classes):
            e = sign * shifts[chunk][:, :, None]  # (Pc, B, 1)
            em1 = np.expm1(e)
            s = 1.0 + p * em1  # new normaliser over the old one, per moved class k
            if loss == "cross_entropy":
                delta = np.log(s) - np.where(is_target, e, 0.0)
            else:
                sumsq = (sq[:, None] + p * p * np.expm1(2 * e)) / (s * s)
                y_t = np.where(is_target, p * (em1 + 1.0), p_t[:, None]) / s
                delta = 0.5 * (sumsq - 2.0 * y_t) - 0.5 * (sq - 2.0 * p_t)[:, None]
            out[chunk] = delta.mean(axis=1)
        results.append(out)
    return results[0], results[1]


def _deep_layer(
    net: Network, inputs: list[Array], layer: int, t: Array, shifts: Array,
    chunks: Chunks,
) -> tuple[Array, Array]:
    """Mean loss changes (P, J) for a layer before the last hidden one: batched forwards."""
    w, b = net.weights(layer)
    pre = inputs[layer] @ w + b
    z0 = net.activate_(pre.copy())
    w_next, b_next = net.weights(layer + 1)
    nxt = inputs[layer + 1] @ w_next + b_next  # layer + 1's pre-activation: a hidden layer
    base = net.forward_from(layer + 2, net.activate_(nxt[None].copy()))
    base_loss = net.sample_losses_of(base[0], t)
    batch, n_units = pre.shape
    widest = max(net.params[2 * k].shape[1] for k in range(layer, net.n_layers))
    results = []
    for sign in (1.0, -1.0):
        out = np.empty((shifts.shape[0], n_units))
        for j in range(n_units):
            for chunk in chunks(batch * widest):
                e = sign * shifts[chunk]
                d = net.activate_(pre[None, :, j] + e) - z0[None, :, j]  # (Pc, B)
                moved = nxt[None] + d[:, :, None] * w_next[j]  # (Pc, B, n_next)
                logits = net.forward_from(layer + 2, net.activate_(moved))
                out[chunk, j] = (net.sample_losses_of(logits, t) - base_loss).mean(axis=1)
        results.append(out)
    return results[0], results[1]
