"""The straightforward float64 oracles the fast code is compared against."""

from __future__ import annotations

import numpy as np

from trainer.network import Network


def naive_numerical_gradient(net: Network, x: np.ndarray, t: np.ndarray, h: float = 1e-4):
    """The book's numerical_gradient: two full forward passes per parameter."""
    grads = []
    for param in net.params:
        grad = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            original = param[idx]
            param[idx] = original + h
            f_plus = net.mean_loss(x, t)
            param[idx] = original - h
            f_minus = net.mean_loss(x, t)
            param[idx] = original
            grad[idx] = (f_plus - f_minus) / (2 * h)
        grads.append(grad)
    return grads
