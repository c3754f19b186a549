"""A trained network's portable byte form: an .npz that NumPy alone can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.checkpoint import npz_bytes, read_npz
from trainer.network import Network
from trainer.preprocess import NO_PREPROCESSING

Array = np.ndarray

FORMAT = "descent-model/1"


def model_to_bytes(
    params: list[Array], activation: str, loss: str, *, dataset: str | None = None,
    classes: Sequence[Any] | None = None, preprocess: dict[str, Any] | None = None,
) -> bytes:
    """params [W1, b1, W2, b2, ...] (a Network's, or TrainResult.params) as .npz bytes.

    Arrays W1, b1, W2, b2, ... as the book names them (W_l is (n_in, n_out)), plus `meta`:
    UTF-8 JSON (a uint8 array) with the format, the activation, the loss, the layer sizes,
    the dataset, the class labels in the order of the outputs (default 0, 1, ...) and the
    preprocessing of the raw features. So `np.load(path)["W1"]` works without Descent, and
    `model_from_bytes` rebuilds a Network.
    """
    weights, biases = params[0::2], params[1::2]
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    meta = {"format": FORMAT, "activation": activation, "loss": loss, "sizes": sizes,
            "dataset": dataset,
            "classes": list(range(sizes[-1])) if classes is None else list(classes),
            "preprocess": preprocess or NO_PREPROCESSING}
    arrays: dict[str, Array] = {}
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    return npz_bytes(meta, arrays)


def model_from_bytes(blob: bytes) -> Network:
    """The Network that `model_to_bytes` wrote; TrainerError if the bytes are not one."""
    return read_model(blob)[0]


def read_model(blob: bytes) -> tuple[Network, dict[str, Any]]:
    """The Network that `model_to_bytes` wrote and its meta (classes default to 0, 1, ...
    and preprocessing to none for a model written before they were kept)."""
    with read_npz(blob, "model") as (meta, data):
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        params = []
        for layer in range(1, len(meta["sizes"])):
            params += [data[f"W{layer}"], data[f"b{layer}"]]
        activation, loss = meta["activation"], meta["loss"]
    meta.setdefault("dataset", None)
    meta.setdefault("classes", list(range(meta["sizes"][-1])))
    meta.setdefault("preprocess", NO_PREPROCESSING)
    # InvalidConfig for an unknown activation or loss
    return Network(params, activation, loss), meta


def predict_proba(net: Network, x: Array) -> Array:
    """Softmax probabilities (n, n_classes), float64, of rows `x` (already preprocessed).
    The logits are the network's own dtype, as when the trainer scored its test set."""
    logits = net.logits(np.asarray(x, dtype=net.dtype)).astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
