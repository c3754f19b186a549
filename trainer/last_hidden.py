"""The numerical gradient of the last hidden layer: the softmax normaliser by its series."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from math import factorial

import numpy as np

from trainer.functions import softmax
from trainer.network import Network

Array = np.ndarray
Chunks = Callable[[int], Iterator[slice]]

SERIES_TOLERANCE = 1e-19  # absolute bound on a series' truncation error of a per-sample loss
MAX_SERIES_TERMS = 12


def last_hidden_layer(
    pre: Array, w_out: Array, logits: Array, t: Array, shifts: Array, net: Network,
    chunks: Chunks,
) -> tuple[Array, Array]:
    """Mean loss changes (P, J) when hidden pre-activation column j moves by +-shifts[i, b].

    pre (B, J) is the layer's pre-activation, w_out (J, K) the output weights, logits
    (B, K), shifts (P, B). `chunks(row_elements)` yields the row slices of shifts to work
    on at a time (and may raise to abandon the computation).
    """
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

    def run(sign: float, out: Array) -> None:
        d_buf = work_buf = np.empty(0)
        for chunk in chunks(batch * n_units):
            if d_buf.shape[0] < chunk.stop - chunk.start:  # the first chunk is the largest
                d_buf = np.empty((chunk.stop - chunk.start, batch, n_units))
                work_buf = np.empty_like(d_buf)
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
    run(1.0, plus)
    run(-1.0, minus)
    return plus / batch, minus / batch


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


def _direct_last_hidden(d: Array, u: Array, p3: Array, p_t: Array, loss: str) -> Array:
    """Per-sample loss changes by calling exp on every (i, b, j, k): the large-step fallback."""
    w = p3[None] * np.exp(d[..., None] * u[None])  # (Pc, B, J, K): p_k exp(d u_k)
    s = w.sum(axis=-1)
    if loss == "cross_entropy":
        return np.log(s)
    sumsq = (w * w).sum(axis=-1) / (s * s)
    sq0 = (p3[:, 0, :] ** 2).sum(axis=1)[:, None]
    return 0.5 * (sumsq - 2.0 * p_t[:, None] / s) - 0.5 * (sq0 - 2.0 * p_t[:, None])
