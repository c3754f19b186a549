"""The fully-connected network: parameters, forward pass, loss and backprop gradient."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trainer.errors import StopCheck
from trainer.functions import (
    ACTIVATION_GRADS_INPLACE,
    ACTIVATIONS_INPLACE,
    LOSSES_FROM_LOGITS,
    lookup,
)

Array = np.ndarray


def init_params(
    sizes: tuple[int, ...],
    activation: str,
    rng: np.random.Generator,
    weight_init_std: float | None = None,
    dtype: str = "float32",
    check_stop: StopCheck | None = None,
) -> list[Array]:
    """[W0, b0, W1, b1, ...] with W_l of shape (sizes[l], sizes[l+1]) and zero biases.

    Without an explicit std: He (sqrt(2 / n_in)) for relu, Xavier (sqrt(1 / n_in)) for
    sigmoid, as in the book's chapter 6; the book's chapter 4 uses a fixed 0.01. A std so
    large that weights overflow gives infinite weights (the training loop refuses them).
    `check_stop`, if given, is called before each layer (a 4096 x 4096 one takes a while).
    """
    params: list[Array] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        if check_stop is not None:
            check_stop()
        if weight_init_std is not None:
            std = weight_init_std
        else:
            std = np.sqrt((2.0 if activation == "relu" else 1.0) / n_in)
        weights = rng.standard_normal((n_in, n_out))
        with np.errstate(over="ignore"):
            weights *= std  # in place: one float64 temporary per layer, not two
            params.append(np.ascontiguousarray(weights, dtype=dtype))
        del weights
        params.append(np.zeros(n_out, dtype=dtype))
    return params


def _flatten(arrays: list[Array]) -> Array:
    flat = np.empty(sum(a.size for a in arrays), dtype=arrays[0].dtype)
    offset = 0
    for a in arrays:
        flat[offset : offset + a.size] = a.ravel()
        offset += a.size
    return flat


def _views(flat: Array, like: list[Array]) -> list[Array]:
    views, offset = [], 0
    for a in like:
        views.append(flat[offset : offset + a.size].reshape(a.shape))
        offset += a.size
    return views


@dataclass
class _Buffers:
    """Per-batch-size scratch arrays, so a training step allocates almost nothing."""

    outputs: list[Array]  # each layer's output: the hidden activations, then the logits
    dz: list[Array]
    rows: Array
    flat_rows: Array  # rows * n_classes: row starts in the flattened logits
    ones: Array  # bias gradients as ones @ dout: a BLAS call, several times faster than sum


@dataclass
class Network:
    """Hidden layers with `activation`, then a softmax output scored by `loss`.

    `params` is the flat list [W0, b0, W1, b1, ...]; W_l is (n_in, n_out). `gradient()`
    returns arrays that are reused by the next call: consume them before calling again.
    """

    params: list[Array]
    activation: str
    loss: str
    _buffers: dict[int, _Buffers] = field(default_factory=dict, repr=False)
    _grads: list[Array] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._act = lookup(ACTIVATIONS_INPLACE, "activation", self.activation)
        self._act_grad = lookup(ACTIVATION_GRADS_INPLACE, "activation", self.activation)
        self._loss = lookup(LOSSES_FROM_LOGITS, "loss", self.loss)
        # Parameters and gradients live in one flat array each (the listed arrays are views
        # into them), so an optimiser step is two NumPy calls instead of two per array.
        self.flat_params = _flatten(self.params)
        self.params = _views(self.flat_params, self.params)
        self.flat_grads = np.empty_like(self.flat_params)
        self._grads = _views(self.flat_grads, self.params)

    def set_gradient(self, grads: list[Array]) -> None:
        """Copy gradients computed elsewhere (the numerical ones) into `flat_grads`."""
        for mine, theirs in zip(self._grads, grads, strict=True):
            mine[...] = theirs

    @property
    def n_layers(self) -> int:
        return len(self.params) // 2

    @property
    def dtype(self) -> np.dtype:
        return self.params[0].dtype

    def weights(self, layer: int) -> tuple[Array, Array]:
        return self.params[2 * layer], self.params[2 * layer + 1]

    def activate_(self, a: Array) -> Array:
        """In place: a <- activation(a), for pre-activations computed outside (numerical.py)."""
        return self._act(a)

    def sample_losses_of(self, logits: Array, t: Array) -> Array:
        """Per-sample loss (..., n) of logits (..., n, n_classes), in float64."""
        return self._loss(logits.astype(np.float64, copy=False), t)

    def forward_from(
        self, layer: int, z: Array, outputs: list[Array] | None = None,
        inputs: list[Array] | None = None,
    ) -> Array:
        """Logits from z (..., n, n_in), the input of layer `layer` (x for layer 0).

        The one layer loop: every forward pass of the network is this one. `outputs`, if
        given, are preallocated arrays, one per layer from `layer` on, that receive each
        layer's output (the training step's buffers: they keep the hidden activations);
        `inputs`, if given, collects the input of every layer from `layer` on.
        """
        last = self.n_layers - 1
        for k in range(layer, last + 1):
            if inputs is not None:
                inputs.append(z)
            a = np.matmul(z, self.params[2 * k], out=None if outputs is None else outputs[k])
            a += self.params[2 * k + 1]
            z = a if k == last else self._act(a)
        return z

    def forward(self, x: Array) -> tuple[list[Array], Array]:
        """Inputs of every layer (x first) and the logits (n, n_classes); allocates."""
        inputs: list[Array] = []
        with np.errstate(over="ignore"):  # a saturated sigmoid: see functions.sigmoid_
            logits = self.forward_from(0, x, inputs=inputs)
        return inputs, logits

    def logits(self, x: Array) -> Array:
        """Logits (n, n_classes); keeps no layer's activations beyond the next layer's."""
        with np.errstate(over="ignore"):
            return self.forward_from(0, x)

    def sample_losses(self, x: Array, t: Array) -> Array:
        """Per-sample loss (n,) of the stable softmax loss."""
        return self.sample_losses_of(self.logits(x), t)

    def mean_loss(self, x: Array, t: Array) -> float:
        return float(self.sample_losses(x, t).mean())

    def predict(self, x: Array) -> Array:
        return self.logits(x).argmax(axis=1)

    def _buffers_for(self, n: int) -> _Buffers:
        buffers = self._buffers.get(n)
        if buffers is None:
            widths = [self.params[2 * layer].shape[1] for layer in range(self.n_layers)]
            dtype = self.dtype
            buffers = _Buffers(
                outputs=[np.empty((n, w), dtype=dtype) for w in widths],
                dz=[np.empty((n, w), dtype=dtype) for w in widths[:-1]],
                rows=np.arange(n),
                flat_rows=np.arange(n) * widths[-1],
                ones=np.ones(n, dtype=dtype),
            )
            self._buffers[n] = buffers
        return buffers

    def gradient(self, x: Array, t: Array) -> tuple[float, list[Array]]:
        """Mean loss of the batch and its exact gradient by backpropagation.

        x (n, n_features) in the network's dtype, t (n,) integer labels. The loss is
        accumulated in float64 whatever the dtype. A saturated sigmoid unit may emit an
        overflow RuntimeWarning (harmless); the training loop silences it once.
        """
        n = x.shape[0]
        buf = self._buffers_for(n)
        out = self.forward_from(0, x, outputs=buf.outputs)
        hidden = buf.outputs

        # Softmax in place: out becomes the shifted logits, then the probabilities. Each
        # NumPy call costs microseconds on arrays this small, so the calls are few.
        out -= out.max(axis=1, keepdims=True)
        if self.loss == "cross_entropy":
            target = buf.flat_rows + t  # (n,) positions of the targets in out.ravel()
            flat = out.reshape(-1)
            picked = float(flat.take(target).sum(dtype=np.float64))
            np.exp(out, out=out)
            sums = out.sum(axis=1, keepdims=True)
            loss = (float(np.log(sums).sum(dtype=np.float64)) - picked) / n
            sums *= n
            out /= sums  # y / n
            flat[target] -= 1.0 / n  # dL/dlogits = (y - onehot(t)) / n
            dout = out
        else:
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
            y = out
            y_t = y[buf.rows, t].astype(np.float64)
            sum_sq = np.einsum("ij,ij->", y, y, dtype=np.float64)
            loss = float(0.5 * (sum_sq - 2 * y_t.sum() + n)) / n
            g = y.copy()
            g[buf.rows, t] -= 1.0
            g *= 1.0 / n
            # Through the softmax: dL/da = y * (g - sum(g * y)).
            g -= np.einsum("ij,ij->i", g, y)[:, None]
            g *= y
            dout = g

        grads = self._grads
        last = self.n_layers - 1
        for layer in range(last, -1, -1):
            inp = x if layer == 0 else hidden[layer - 1]
            np.matmul(inp.T, dout, out=grads[2 * layer])
            np.matmul(buf.ones, dout, out=grads[2 * layer + 1])
            if layer == 0:
                break
            w = self.params[2 * layer]
            dz = np.matmul(dout, w.T, out=buf.dz[layer - 1])
            dout = self._act_grad(dz, hidden[layer - 1])
        return loss, grads
