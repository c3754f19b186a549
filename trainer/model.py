"""A trained network's portable byte form: an .npz that NumPy alone can read."""

from __future__ import annotations

import numpy as np

from trainer.checkpoint import npz_bytes, read_npz
from trainer.network import Network

Array = np.ndarray

FORMAT = "descent-model/1"


def model_to_bytes(params: list[Array], activation: str, loss: str) -> bytes:
    """params [W1, b1, W2, b2, ...] (a Network's, or TrainResult.params) as .npz bytes.

    Arrays W1, b1, W2, b2, ... as the book names them (W_l is (n_in, n_out)), plus `meta`:
    UTF-8 JSON with the format, the activation, the loss and the layer sizes. So
    `np.load(path)["W1"]` works without Descent, and `model_from_bytes` rebuilds a Network.
    """
    weights, biases = params[0::2], params[1::2]
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    meta = {"format": FORMAT, "activation": activation, "loss": loss, "sizes": sizes}
    arrays: dict[str, Array] = {}
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    return npz_bytes(meta, arrays)


def model_from_bytes(blob: bytes) -> Network:
    """The Network that `model_to_bytes` wrote; TrainerError if the bytes are not one."""
    with read_npz(blob, "model") as (meta, data):
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        params = []
        for layer in range(1, len(meta["sizes"])):
            params += [data[f"W{layer}"], data[f"b{layer}"]]
        activation, loss = meta["activation"], meta["loss"]
    return Network(params, activation, loss)  # InvalidConfig for an unknown activation or loss
