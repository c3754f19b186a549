"""A trained network's portable byte form: an .npz that NumPy alone can read.

Arrays W1, b1, W2, b2, ... as the book names them (W_l is (n_in, n_out)), plus `meta`:
UTF-8 JSON with the format, the activation, the loss and the layer sizes. So
`np.load(path)["W1"]` works without Descent, and `model_from_bytes` rebuilds a Network.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from trainer.errors import TrainerError
from trainer.network import Network

Array = np.ndarray

FORMAT = "descent-model/1"


def model_to_bytes(params: list[Array], activation: str, loss: str) -> bytes:
    """params [W1, b1, W2, b2, ...] (a Network's, or TrainResult.params) as .npz bytes."""
    weights = params[0::2]
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    meta = {"format": FORMAT, "activation": activation, "loss": loss, "sizes": sizes}
    arrays: dict[str, Array] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    for layer, (w, b) in enumerate(zip(params[0::2], params[1::2], strict=True), start=1):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = w, b
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def model_from_bytes(blob: bytes) -> Network:
    """The Network that `model_to_bytes` wrote; TrainerError if the bytes are not one."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            n_layers = len(meta["sizes"]) - 1
            params = []
            for layer in range(1, n_layers + 1):
                params += [data[f"W{layer}"], data[f"b{layer}"]]
            activation, loss = meta["activation"], meta["loss"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise TrainerError(f"model is unreadable: {exc}") from exc
    return Network(params, activation, loss)  # InvalidConfig for an unknown activation or loss
