"""Stochastic gradient descent, with optional momentum; it sees only arrays, never the model."""

from __future__ import annotations

import numpy as np

Array = np.ndarray


class SGD:
    """w <- w - lr * g, or with momentum: v <- mu * v - lr * g; w <- w + v.

    `update` works in place on the parameter arrays and may scale `grads` in place.
    """

    def __init__(self, learning_rate: float, momentum: float = 0.0) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity: list[Array] | None = None

    def update(self, params: list[Array], grads: list[Array]) -> None:
        lr = params[0].dtype.type(self.learning_rate)
        if self.momentum == 0.0:
            for p, g in zip(params, grads, strict=True):
                g *= lr
                p -= g
            return
        if self.velocity is None:
            self.velocity = [np.zeros_like(p) for p in params]
        mu = params[0].dtype.type(self.momentum)
        for p, g, v in zip(params, grads, self.velocity, strict=True):
            v *= mu
            g *= lr
            v -= g
            p += v

    def state(self) -> list[Array]:
        return [] if self.velocity is None else [v.copy() for v in self.velocity]

    def load_state(self, velocity: list[Array]) -> None:
        self.velocity = [v.copy() for v in velocity] if velocity else None
