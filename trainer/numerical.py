"""Numerical differentiation: central differences for every parameter, and the gradient check.

The gradient of every parameter w is (f(w + h) - f(w - h)) / 2h with h = 1e-4, in float64,
where f is the batch-mean loss of the whole network: the book's method, not a shortcut
through backprop. It is made practical by evaluating the perturbed losses together:
perturbing W_l[i, j] (or b_l[j]) by s*h only moves column j of layer l's pre-activation,
by s*h*z_i (z the layer's input, 1 for the bias). So for one column j the perturbed
pre-activations of every i form one (P, B) array, and the rest of the network is applied
to all of them at once:

- output layer: logit j moves by e; the softmax losses of the moved logits have closed
  forms in p = softmax(logits) and exp(e) (no approximation).
- last hidden layer: hidden unit j moves by d = act(a + e) - act(a) (sigmoid evaluated as
  1 / (1 + exp(-a) exp(-e)), exactly), the logits by d * W[j]. The softmax normaliser
  sum_k p_k exp(d u_k) is evaluated for every (i, b, j) by summing the exponential series
  over k first (the moments of u under p): with |d u| ~ 1e-5 a few terms reach float64
  rounding, and the truncation bound is checked per chunk; chunks where it is not small
  fall back to calling exp on every element.
- earlier layers: the perturbed columns are pushed through the remaining layers as
  batched matrix products.

Each chunk computes f(w +- h) - f(w) per perturbation, so the large common f(w) cancels
before rounding can hurt. `tests/trainer/oracle.py` keeps the straightforward version
(two full forward passes per parameter) that this must agree with.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import factorial

import numpy as np

from trainer.functions import softmax
from trainer.network import Network

Array = np.ndarray

H = 1e-4
SERIES_TOLERANCE = 1e-19  # absolute bound on a series' truncation error of a per-sample loss
MAX_SERIES_TERMS = 12
CHUNK_ELEMENTS = 1 << 16  # 512 KiB of float64 per working array: stays in cache


def numerical_gradient(net: Network, x: Array, t: Array, h: float = H) -> list[Array]:
    """Central-difference gradient of net's batch-mean loss for every parameter.

    x (B, n_features) and the network's parameters must be float64; t (B,) labels.
    Returns arrays shaped like `net.params`.
    """
    if net.dtype != np.float64 or x.dtype != np.float64:
        raise TypeError("numerical_gradient needs float64 parameters and inputs")
    with np.errstate(over="ignore"):  # saturated sigmoid units: see functions.sigmoid_
        return _numerical_gradient(net, x, t, h)


def _numerical_gradient(net: Network, x: Array, t: Array, h: float) -> list[Array]:
    inputs, logits = net.forward(x)
    n_layers = net.n_layers
    batch = x.shape[0]
    grads: list[Array] = []
    for layer in range(n_layers):
        z = np.concatenate([inputs[layer], np.ones((batch, 1))], axis=1)
        shifts = h * z.T  # (P, B): pre-activation moves of +h on W[i, :] (and b: z_i = 1)
        if layer == n_layers - 1:
            plus, minus = _output_layer(logits, t, shifts, net.loss)
        elif layer == n_layers - 2:
            w, b = net.weights(layer)
            pre = inputs[layer] @ w + b
            w_out = net.weights(layer + 1)[0]
            plus, minus = _last_hidden_layer(pre, w_out, logits, t, shifts, net)
        else:
            plus, minus = _deep_layer(net, inputs, layer, t, shifts)
        g = (plus - minus) / (2 * h)
        grads.extend([np.ascontiguousarray(g[:-1]), np.ascontiguousarray(g[-1])])
    return grads


def gradient_check(net: Network, x: Array, t: Array, h: float = H) -> list[float]:
    """Relative error |backprop - numerical| / max(|backprop| + |numerical|, tiny) per array."""
    _, analytic = net.gradient(x, t)
    analytic = [g.copy() for g in analytic]
    numeric = numerical_gradient(net, x, t, h)
    errors = []
    for a, n in zip(analytic, numeric, strict=True):
        scale = max(float(np.abs(a).max() + np.abs(n).max()), 1e-30)
        errors.append(float(np.abs(a - n).max() / scale))
    return errors


def _row_chunks(n_rows: int, row_elements: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(row_elements, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _output_layer(logits: Array, t: Array, shifts: Array, loss: str) -> tuple[Array, Array]:
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
        for chunk in _row_chunks(shifts.shape[0], batch * n_classes):
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


def _series_terms(x_max: float) -> int | None:
    """Fewest terms n with x^(n+1) / (n+1)! * e^x <= SERIES_TOLERANCE, or None."""
    if x_max == 0.0:
        return 1
    for n in range(1, MAX_SERIES_TERMS + 1):
        if x_max ** (n + 1) / factorial(n + 1) * np.exp(x_max) <= SERIES_TOLERANCE:
            return n
    return None


def _horner(d: Array, coeffs: Sequence[Array | np.floating], out: Array) -> Array:
    """out = sum_{n>=1} coeffs[n-1] * d^n, coefficients broadcast against d."""
    np.multiply(d, coeffs[-1], out=out)
    for c in reversed(coeffs[:-1]):
        out += c
        out *= d
    return out


def _log1p(s: Array, out: Array) -> Array:
    """log(1 + s) by its alternating series when |s| is tiny, else by np.log1p; out is not s."""
    s_max = float(np.abs(s).max()) if s.size else 0.0
    terms = None
    if s_max < 0.5:
        for n in range(1, MAX_SERIES_TERMS + 1):
            if s_max ** (n + 1) / ((n + 1) * (1 - s_max)) <= SERIES_TOLERANCE:
                terms = n
                break
    if terms is None:
        return np.log1p(s, out=out)
    coeffs = [np.float64((-1.0) ** (n + 1) / n) for n in range(1, terms + 1)]
    return _horner(s, coeffs, out)


def _last_hidden_layer(
    pre: Array, w_out: Array, logits: Array, t: Array, shifts: Array, net: Network
) -> tuple[Array, Array]:
    """Mean loss changes (P, J) when hidden pre-activation column j moves by +-shifts[i, b]."""
    p = softmax(logits)
    batch = p.shape[0]
    rows = np.arange(batch)
    p_t = p[rows, t]
    # u[b, j, k] = W[j, k] - W[j, t_b]: the logit moves relative to the target's, per unit d.
    u = w_out[None, :, :] - w_out[:, t].T[:, :, None]
    u_max = float(np.abs(u).max()) if u.size else 0.0
    sigmoid = net.activation == "sigmoid"
    if sigmoid:
        with np.errstate(over="ignore"):  # a saturated unit: exp(-a) = inf, sigmoid 0
            q = np.exp(-pre)
        z0 = 1.0 / (1.0 + q)
        lipschitz = 0.25
    else:
        z0 = np.maximum(pre, 0.0)
        lipschitz = 1.0
    x_max = float(np.abs(shifts).max()) * lipschitz * u_max if shifts.size else 0.0
    terms = _series_terms(x_max)
    p3 = p[:, None, :]
    sq0 = (p * p).sum(axis=1)[:, None]
    # Moments of u under p (and under p^2 with 2u, for the sum of squares), over n!:
    # sum_k p_k exp(d u_k) - 1 = sum_n d^n m[n-1], summed over k before d is known.
    m: list[Array] = []
    q2: list[Array] = []
    power = np.ones_like(u)
    for n in range(1, (terms or 0) + 1):
        power = power * u
        m.append(np.einsum("bjk,bk->bj", power, p) / factorial(n))
        if net.loss == "sum_squares":
            q2.append(np.einsum("bjk,bk->bj", power, p * p) * 2.0**n / factorial(n))
    n_units = pre.shape[1]
    chunks = _row_chunks(shifts.shape[0], batch * n_units)
    rows_max = chunks[0].stop - chunks[0].start

    def run(sign: float, part: list[slice], out: Array) -> None:
        d_buf = np.empty((rows_max, batch, n_units))
        work_buf = np.empty_like(d_buf)
        for chunk in part:
            e = sign * shifts[chunk]  # (Pc, B)
            d = d_buf[: e.shape[0]]
            work = work_buf[: e.shape[0]]
            if sigmoid:
                # sigmoid(a + e) = 1 / (1 + exp(-a) exp(-e)), minus sigmoid(a): exact.
                np.multiply(q[None], np.exp(-e)[:, :, None], out=d)
                d += 1.0
                np.reciprocal(d, out=d)
            else:
                np.add(pre[None], e[:, :, None], out=d)
                np.maximum(d, 0.0, out=d)
            d -= z0
            if terms is None:
                delta = _direct_last_hidden(d, u, p3, p_t, net.loss)
            elif net.loss == "cross_entropy":
                s1 = _horner(d, m, work)  # sum_k p_k exp(d u_k) - 1
                delta = _log1p(s1, d)  # d is not needed any more
            else:
                s = _horner(d, m, work)
                s += 1.0
                sumsq = _horner(d, q2, np.empty_like(d))
                sumsq += sq0
                sumsq /= s * s
                delta = 0.5 * (sumsq - 2.0 * p_t[:, None] / s) - 0.5 * (sq0 - 2.0 * p_t[:, None])
            np.sum(delta, axis=1, out=out[chunk])

    plus = np.empty((shifts.shape[0], n_units))
    minus = np.empty_like(plus)
    run(1.0, chunks, plus)
    run(-1.0, chunks, minus)
    return plus / batch, minus / batch


def _direct_last_hidden(d: Array, u: Array, p3: Array, p_t: Array, loss: str) -> Array:
    """Per-sample loss changes by calling exp on every (i, b, j, k): the large-step fallback."""
    w = p3[None] * np.exp(d[..., None] * u[None])  # (Pc, B, J, K): p_k exp(d u_k)
    s = w.sum(axis=-1)
    if loss == "cross_entropy":
        return np.log(s)
    sumsq = (w * w).sum(axis=-1) / (s * s)
    sq0 = (p3[:, 0, :] ** 2).sum(axis=1)[:, None]
    return 0.5 * (sumsq - 2.0 * p_t[:, None] / s) - 0.5 * (sq0 - 2.0 * p_t[:, None])


def _deep_layer(
    net: Network, inputs: list[Array], layer: int, t: Array, shifts: Array
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
            for chunk in _row_chunks(shifts.shape[0], batch * widest):
                e = sign * shifts[chunk]
                d = net.activate_(pre[None, :, j] + e) - z0[None, :, j]  # (Pc, B)
                moved = nxt[None] + d[:, :, None] * w_next[j]  # (Pc, B, n_next)
                logits = net.forward_from(layer + 2, net.activate_(moved))
                out[chunk, j] = (net.sample_losses_of(logits, t) - base_loss).mean(axis=1)
        results.append(out)
    return results[0], results[1]
